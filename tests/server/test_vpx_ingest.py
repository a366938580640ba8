"""VP8 and VP9 screens (what the browser recorder sends when it cannot encode H.264) through the real server:
ingest validation, OCR by the visual pipeline, the newest frame (thumbnails, screen_now), session export (VP9
copied into the MP4, VP8 re-encoded to H.264), a clip, and clear rejections of fragments that are not what
they claim."""
from __future__ import annotations

import base64
import dataclasses
import io
import time

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from testkit.media import text_image, vpx_fragments
from testkit.wait import wait_for_value
from vdbnb.media.check import check_media
from vdbnb.media.fragments import FragmentError, unpack

LINES = ["Quarterly report draft", "INVOICE-{n} is overdue"]


def frames_with(n: int, count: int = 8):
    img = text_image([line.format(n=n) for line in LINES])
    return [(img, {"window_title": "Report - Browser tab"})] * count


@pytest.mark.parametrize("codec", ["vp8", "vp9"])
def test_check_media_reads_vpx_frames(codec):
    frags = vpx_fragments("display:1", frames_with(1, 5), time.time(), codec=codec)
    for f in frags:
        check_media(unpack(f.pack()))
    first = frags[0]
    # a fragment that starts with an interframe cannot be decoded alone
    tail = first.packets[1:]
    size0 = first.packets[0]["size"]
    bad = dataclasses.replace(first, packets=tail, payload=first.payload[size0:])
    with pytest.raises(FragmentError, match="must start with a keyframe"):
        check_media(unpack(bad.pack()))
    # H.264 bytes labelled as VPx
    junk = dataclasses.replace(first, packets=[{"pts": first.t0, "size": 8, "key": True}],
                               payload=b"\x00\x00\x00\x01\x67\x64\x00\x28")
    with pytest.raises(FragmentError, match=f"not a {codec.upper()} frame"):
        check_media(unpack(junk.pack()))
    with pytest.raises(FragmentError, match="not supported"):
        check_media(unpack(dataclasses.replace(first, codec="av1").pack()))
    # a fragment continuing a GOP holds no keyframe
    with pytest.raises(FragmentError, match="holds a keyframe"):
        check_media(unpack(dataclasses.replace(frags[1], gop_seq=0).pack()))


def post(server, path, token, **kw):
    return httpx.post(f"{server.url}{path}", headers={"x-access-token": token}, timeout=30, **kw)



@pytest.mark.slow
def test_vp9_and_vp8_screens_end_to_end(server):
    import vdbnb
    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="vpx")
    token = conn.generate_client_token(600)
    r = post(server, "/capture/session/start", token, json={"session_id": cap.id, "channels": [
        {"channel_id": "display:1", "type": "video", "name": "Tab", "store": True, "is_primary": True},
        {"channel_id": "display:2", "type": "video", "name": "Window", "store": True}]})
    r.raise_for_status()
    t0 = time.time()
    vp9 = vpx_fragments("display:1", frames_with(4471), t0, codec="vp9", gop_s=120)   # one GOP, continued
    assert vp9[0].gop_seq is None and [f.gop_seq for f in vp9[1:]] == [0] * (len(vp9) - 1)
    vp8 = vpx_fragments("display:2", frames_with(5582), t0, codec="vp8")
    post(server, f"/capture/session/{cap.id}/fragment", token, content=vp9[0].pack()).raise_for_status()
    screen = cap.refresh().get_rtstream("screen")
    tab = next(s for s in screen if s.source_channel_id == "display:1")
    tab.index_visuals(prompt="What is on the screen?", batch_config={"type": "time", "value": 2, "frame_count": 1})
    for f in vp9[1:] + vp8:
        r = post(server, f"/capture/session/{cap.id}/fragment", token, content=f.pack())
        assert r.status_code == 200, r.text
    # an interframe-first VP9 fragment is refused with the reason, and nothing is stored for it
    bad = dataclasses.replace(vp9[0], seq=len(vp9), packets=vp9[0].packets[1:], gop_seq=None,
                              payload=vp9[0].payload[vp9[0].packets[0]["size"]:])
    r = post(server, f"/capture/session/{cap.id}/fragment", token, content=bad.pack())
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_MEDIA", r.text
    assert "keyframe" in r.json()["message"]

    # OCR reads the VP9 frames
    def ocr_text():
        evs = conn.get_capture_session(cap.id).events("visual_index")
        return " ".join(f"{e.text} {e.data}" for e in evs) if evs else ""
    assert "INVOICE-4471" in wait_for_value(lambda: "INVOICE-4471" in ocr_text() and ocr_text(), "OCR of the VP9 screen", 90)

    # the newest frame (what a thumbnail or an agent's screen_now shows): VP9 decoded on its continued GOP, VP8
    win = next(s for s in cap.refresh().get_rtstream("screen") if s.source_channel_id == "display:2")
    for rts, n in ((tab, 4471), (win, 5582)):
        fr = rts.get_frame(format="png")
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(fr["image_b64"]))).convert("RGB"))
        assert img.shape == frames_with(n)[0][0].shape and f"INVOICE-{n}" in fr["ocr_text"], fr["ocr_text"]
        assert np.abs(img.astype(int) - frames_with(n)[0][0].astype(int)).mean() < 8

    post(server, f"/capture/session/{cap.id}/stop", token).raise_for_status()
    done = cap.export(wait=True, timeout=120)
    assert done["export_status"] == "exported", done
    main = httpx.get(done["stream_url"], timeout=30, follow_redirects=True)
    assert main.status_code == 200
    with av.open(io.BytesIO(main.content)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "vp9"  # copied, not re-encoded
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        dur = float(c.duration / av.time_base)
    assert abs(dur - 4.0) < 0.6, dur
    ref = frames_with(4471)[0][0]
    assert np.abs(frames[-1].astype(int) - ref.astype(int)).mean() < 6

    # the VP8 display's own asset: MP4 cannot carry VP8, so it is H.264, same picture, same duration
    asset = win.export()
    got = httpx.get(asset["stream_url"], timeout=30, follow_redirects=True)
    assert got.status_code == 200
    with av.open(io.BytesIO(got.content)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        dur = float(c.duration / av.time_base)
    assert abs(dur - 4.0) < 0.6, dur
    ref = frames_with(5582)[0][0]
    assert np.abs(frames[-1].astype(int) - ref.astype(int)).mean() < 8

    # a clip of the VP9 display plays
    tab.generate_stream(t0 + 1, t0 + 3)
    clip = httpx.get(tab.stream_url, timeout=30, follow_redirects=True)
    assert clip.status_code == 200 and clip.content[4:8] == b"ftyp"
    with av.open(io.BytesIO(clip.content)) as c:
        assert c.streams.video[0].codec_context.name == "vp9" and sum(1 for _ in c.decode(video=0)) >= 2
