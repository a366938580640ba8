"""Video whose GOPs span many fragments (a keyframe every 60 s, fragments of <= 2 s) through the real server:
ingest accepts the continuation fragments, and a clip that starts mid-GOP is frame-exact."""
from __future__ import annotations

import time

import av
import httpx
import numpy as np

from vdbnb.media.encode import VideoEncoder
from vdbnb.media.fragmenter import Fragmenter


def _frames(n, size=(360, 640)):
    out = []
    for i in range(n):
        img = np.zeros(size + (4,), np.uint8)
        img[:, : 20 * (i + 1), :3] = 255   # the bar's width says which frame this is
        out.append(img)
    return out


def _index(rgb) -> int:
    return int(round((rgb[180, :, 0] > 128).sum() / 20)) - 1


def test_clip_from_the_middle_of_a_long_gop(server, tmp_path):
    h = server.headers()
    sid = httpx.post(f"{server.url}/collection/default/capture/session", json={"end_user_id": "gop"},
                     headers=h).json()["data"]["session_id"]
    tok = httpx.post(f"{server.url}/capture/session/token", json={}, headers=h).json()["data"]["token"]
    ch = {"x-access-token": tok}
    httpx.post(f"{server.url}/capture/session/start", headers=ch, json={"session_id": sid, "channels": [
        {"channel_id": "display:1", "type": "video", "name": "d1", "store": True}]}).raise_for_status()
    t0 = time.time() - 40
    enc = VideoEncoder(640, 360, fps=1.0)                        # the recorder's defaults: GOP 60 s
    fr = Fragmenter("display:1", "video", "h264", enc.codec_info, max_s=6.0)   # fragments longer than 2 s
    frags = []
    for i, img in enumerate(_frames(30)):
        frags += fr.add(enc.encode(img, t0 + i))
    frags += fr.add(enc.flush()) + fr.flush()
    assert len(frags) == 5 and [f.gop_seq for f in frags] == [None, 0, 0, 0, 0]
    assert all(f.t1 - f.t0 > 2.0 for f in frags)
    for f in frags:
        httpx.post(f"{server.url}/capture/session/{sid}/fragment", content=f.pack(), headers=ch).raise_for_status()
    httpx.post(f"{server.url}/capture/session/{sid}/stop", headers=ch, json={}).raise_for_status()
    rid = httpx.get(f"{server.url}/capture/session/{sid}", headers=ch).json()["data"]["channels"][0]["rtstream_id"]
    # 20.4 s lies in the 4th fragment (18..24 s), 20 s after the keyframe
    d = httpx.get(f"{server.url}/rtstream/{rid}/stream", params={"start": t0 + 20.4, "end": t0 + 22.5},
                  headers=h).json()["data"]
    r = httpx.get(d["stream_url"], timeout=60, follow_redirects=True)  # S3: a redirect to a presigned URL
    assert r.status_code == 200, r.text
    (tmp_path / "clip.mp4").write_bytes(r.content)
    with av.open(str(tmp_path / "clip.mp4")) as c:
        got = [(round(f.time, 2), _index(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
        dur = c.duration / av.time_base
    assert got == [(0.0, 20), (0.6, 21), (1.6, 22)], got
    assert abs(dur - 2.1) < 0.05
