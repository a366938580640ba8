"""The unmodified official SDK (videodb 0.5.1) drives vdbnb's recorder through its documented hook: any
importable ``videodb_capture_bin`` with ``get_binary_path()``."""
from __future__ import annotations

import asyncio
import sys

import pytest

from rigutil import backend_session, seqs, server_fragments


@pytest.fixture
def sdk_shim():
    """The product's hook: vdbnb.compat registers vdbnb's recorder as the SDK's capture binary."""
    import vdbnb.compat
    exe = vdbnb.compat.use_vdbnb_recorder(force=True)
    yield exe
    sys.modules.pop("videodb_capture_bin", None)


def test_official_capture_client(rig, server, sdk_shim, spool_dir, monkeypatch):
    pytest.importorskip("videodb")
    from videodb.capture import CaptureClient

    monkeypatch.setenv("VDBNB_SPOOL_DIR", str(spool_dir))
    sid, token = backend_session(server)

    async def run():
        c = CaptureClient(token, base_url=server.url)
        assert await c.request_permission("microphone") and await c.request_permission("screen_capture")
        ch = await c.list_channels()
        assert ch.displays and ch.mics.default and ch.system_audio.default
        await c.start_session(sid, [ch.displays[0], ch.mics.default])
        seen = []

        async def collect():
            async for ev in c.events():
                seen.append(ev)
                if ev["event"] == "recording-complete":
                    break

        t = asyncio.create_task(collect())
        await asyncio.sleep(3)
        await ch.mics.default.pause()
        await ch.mics.default.resume()
        await c.stop_session()
        await asyncio.wait_for(t, 20)
        await c.shutdown()
        return seen

    seen = asyncio.run(run())
    names = [e["event"] for e in seen]
    assert "recording-started" in names and names[-1] == "recording-complete"
    done = seen[-1]["payload"]
    assert done["status"] == "complete"
    frags = server_fragments(server.data_dir, sid)
    for cid in ("display:1", "mic:default"):
        s = seqs(frags[cid])
        assert s and s == list(range(len(s)))
