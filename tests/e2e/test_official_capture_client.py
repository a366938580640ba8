"""The unmodified official SDK end to end: ``videodb.capture.CaptureClient`` (its documented binary hook →
vdbnb's recorder) captures the rig's screen and microphone into ``vdbnb serve``; the official backend sees
the session go active and stop, with media stored."""
from __future__ import annotations

import asyncio
import time

import pytest

videodb = pytest.importorskip("videodb")


@pytest.mark.slow
@pytest.mark.rig
def test_official_capture_client(rig, server, tmp_path):
    import videodb.capture as vcap

    import vdbnb.compat
    exe = vdbnb.compat.use_vdbnb_recorder(force=True)
    assert exe
    conn = videodb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="official")
    token = conn.generate_client_token(expires_in=600)

    async def run():
        client = vcap.CaptureClient(client_token=token, base_url=server.url)
        assert await client.request_permission("microphone")
        chans = await client.list_channels()
        assert chans.displays.default and chans.mics.default and chans.system_audio.default
        disp, mic = chans.displays.default, chans.mics.default
        disp.store = mic.store = True
        await client.start_session(capture_session_id=cap.id, channels=[disp, mic])
        seen = []
        deadline = time.time() + 15
        async for ev in client.events():
            seen.append(ev)
            if ev.get("event") == "recording-started" or time.time() > deadline:
                break
        await asyncio.sleep(4)
        await client.stop_session()
        await client.shutdown()
        return seen

    seen = asyncio.run(run())
    assert any(e.get("event") == "recording-started" for e in seen), seen
    s = conn.get_capture_session(cap.id)
    deadline = time.time() + 15
    while s.status not in ("stopped", "exported") and time.time() < deadline:
        time.sleep(0.3)
        s = conn.get_capture_session(cap.id)
    assert s.status == "stopped"
    assert s.get_rtstream("mic") and s.get_rtstream("screen")
    media = list((server.data_dir / "media" / cap.id).rglob("*.frag"))
    assert len(media) >= 5
