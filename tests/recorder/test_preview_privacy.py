"""Previews before recording (thumbnail ≥ 2 fps per display, levels ≥ 15 Hz per audio channel), the raw
line protocol, privacy masks and pause, checked on what reached the server."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from vdbnb.media.decode import decode_audio, iter_video_frames, load_fragments
from vdbnb.capture import CaptureClient, SyncCaptureClient

from rigutil import Xterm, backend_session, play, server_fragments, tts
from testkit import wait_for


def test_line_protocol_raw(rig):
    """The framing of docs/recorder-protocol.md, spoken by hand."""
    p = subprocess.Popen([sys.executable, "-m", "vdbnb.recorder"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)

    def send(cmd, cid, params=None):
        p.stdin.write("noise line without prefix\n")
        p.stdin.write("videodb_recorder|" + json.dumps({"command": cmd, "commandId": cid, "params": params or {}})
                      + "\n")
        p.stdin.flush()

    def read_response(cid):
        while True:
            line = p.stdout.readline()
            assert line, "recorder exited"
            if line.startswith("videodb_recorder|"):
                m = json.loads(line.split("|", 1)[1])
                if m.get("type") == "response" and m["commandId"] == cid:
                    return m

    send("init", "1", {"apiUrl": "http://127.0.0.1:9"})
    assert read_response("1")["status"] == "success"
    send("ping", "2")
    assert read_response("2")["result"]["pong"] is True
    send("frobnicate", "3")
    r = read_response("3")
    assert r["status"] == "error" and r["result"]["code"] == "UNKNOWN_COMMAND"
    send("getChannels", "4")
    ids = [c["channel_id"] for c in read_response("4")["result"]["channels"]]
    assert {"display:1", "display:2", "mic:default", "system_audio:default"} <= set(ids)
    send("stopRecording", "5", {"sessionId": "x"})
    assert read_response("5")["result"]["code"] == "NOT_RECORDING"
    p.stdin.close()  # exits when stdin closes
    assert p.wait(15) == 0


def test_preview_before_recording(rig, tmp_path):
    wav = tts(tmp_path / "p.wav", "testing the level meter one two three")
    thumbs, levels = [], []

    async def run():
        c = CaptureClient("st-unused", "http://127.0.0.1:9")
        c.add_listener(lambda ev: (thumbs if ev.event == "thumbnail" else levels).append(ev)
                       if ev.event in ("thumbnail", "audio-level") else None)

        async def until(pred, timeout):
            deadline = time.time() + timeout
            while not pred() and time.time() < deadline:
                await asyncio.sleep(0.05)
            return pred()

        def chans(evs, since):
            return {e.payload["channel_id"] for e in evs[since:]}

        try:
            await c.start_preview()
            # the audio capture processes are up once both channels deliver levels
            assert await until(lambda: {"mic:default", "system_audio:default"} <= chans(levels, 0), 20)
            n_t, n_l = len(thumbs), len(levels)
            player = play(wav, "mic_feed")
            await asyncio.to_thread(player.wait, 15)
            assert await until(lambda: sum(1 for e in thumbs[n_t:] if e.payload["channel_id"] == "display:2") >= 3
                               and sum(1 for e in thumbs[n_t:] if e.payload["channel_id"] == "display:1") >= 3, 20)
            await c.stop_preview()
            return levels[n_l:], thumbs[n_t:]
        finally:
            await c.shutdown()

    lv, th = asyncio.run(run())
    per_display = {}
    for ev in th:
        per_display.setdefault(ev["payload"]["channel_id"], []).append(ev["payload"]["ts"])
    assert set(per_display) >= {"display:1", "display:2"}
    for cid, ts in per_display.items():
        assert ts == sorted(ts), cid  # (thumbnails per second: bench/bench_recorder.py)
    im = Image.open(io.BytesIO(base64.b64decode(th[-1].payload["jpeg_b64"])))
    assert im.format == "JPEG" and im.width == th[-1].payload["width"] <= 320
    per_chan = {}
    for ev in lv:
        per_chan.setdefault(ev.payload["channel_id"], []).append(ev.payload)
    assert set(per_chan) >= {"mic:default", "system_audio:default"}
    for cid, evs in per_chan.items():
        # one level per 1/16 s of captured audio: counted by audio time, so a busy CPU delivering late changes
        # nothing (level events per wall-clock second: bench/bench_recorder.py)
        ts = [e["ts"] for e in evs]
        assert ts == sorted(ts) and (len(ts) - 1) / (ts[-1] - ts[0]) >= 15, f"{cid}: {len(ts)} levels"
    assert max(e["rms"] for e in per_chan["mic:default"]) > 0.03  # the speech shows on the mic meter
    assert max(e["peak"] for e in per_chan["system_audio:default"]) < 0.01  # and not on system audio


@pytest.mark.slow
def test_privacy_and_pause(rig, server, spool_dir, tmp_path):
    sid, token = backend_session(server)
    secret = Xterm("Bank Account Secret", bg="green", geometry="50x10+300+300")
    visible = Xterm("Public Notes", bg="blue", geometry="50x10+1100+300")
    wav = tts(tmp_path / "s.wav", "this must not be recorded while paused")
    c = SyncCaptureClient(token, server.url)
    try:
        c.start_session(sid, ["display:1", "mic:default"], spoolDir=str(spool_dir),
                        privacy={"exclude_windows": ["secret"], "exclude_rects": [{"x": 0, "y": 0, "w": 200, "h": 100}]})
        frags_now = lambda: c.stats()["pipelines"]  # noqa: E731
        wait_for(lambda: all(frags_now()[x]["fragments"] >= 1 for x in ("display:1", "mic:default")), 60,
                 "live fragments before the pause")
        secret.activate()  # the excluded window is the active one for a while: its title must not leave either
        time.sleep(1.5)
        visible.activate()
        r = c.pause(["screen", "mic"])
        assert set(r["channels"]) == {"display:1", "mic:default"}
        t_p0 = time.time()
        play(wav, "mic_feed").wait(10)
        t_p1 = time.time()
        c.resume(["screen", "mic"])
        resumed = frags_now()
        wait_for(lambda: all(frags_now()[x]["fragments"] > resumed[x]["fragments"] for x in ("display:1", "mic:default")),
                 60, "fragments after the resume")
        done = c.stop_session()
    finally:
        c.shutdown()
        secret.close()
        visible.close()
    assert done["status"] == "complete"
    frags = server_fragments(server.data_dir, sid)
    frames = list(iter_video_frames(frags["display:1"]))
    live = [img for p, img in frames if not (t_p0 - 0.6 < p < t_p1 + 0.6)]

    def shown_at(t):  # variable frame rate: a frame holds until the next one
        return [img for p, img in frames if p <= t][-1]

    paused = [shown_at(t) for t in np.arange(t_p0 + 0.6, t_p1 - 0.1, 0.25)]
    assert live and paused
    green = lambda im: ((im[..., 1] > 150) & (im[..., 0] < 80) & (im[..., 2] < 80)).mean()  # noqa: E731
    blue = lambda im: ((im[..., 2] > 150) & (im[..., 0] < 80) & (im[..., 1] < 80)).mean()  # noqa: E731
    for im in live:
        assert green(im) < 1e-4, "the excluded window's pixels reached the server"
        assert blue(im) > 0.01, "the other window should stay visible"
        assert im[:100, :200].max() < 30, "the excluded rectangle is not black"
    for im in paused:
        assert im.max() < 30, "paused video must be black frames"
    pcm, ts = decode_audio(frags["mic:default"])
    a, b = int((t_p0 + 0.3 - ts) * 16000), int((t_p1 - 0.3 - ts) * 16000)
    assert np.abs(pcm[a:b]).max() < 0.01, "paused audio must be silence"
    metas = [load_fragments([f])[0].meta for f in frags["display:1"]]
    assert any(m.get("paused") for m in metas)
    # the title of the excluded window never left, though it was the active window for 1.5 s
    assert not any("secret" in json.dumps(m).lower() for m in metas), [m for m in metas if "ecret" in json.dumps(m)]
    assert any(m.get("excluded_window_active") for m in metas), "the excluded window was active: it must say so"
    assert any(m.get("window_title") == "Public Notes" for m in metas), "titles of other windows still arrive"


def _green(im) -> float:
    return float(((im[..., 1] > 150) & (im[..., 0] < 90) & (im[..., 2] < 90)).mean())


@pytest.mark.slow
def test_window_that_appears_mid_recording_never_leaves(rig, server, spool_dir):
    """An excluded window mapped (and moved, and a public one retitled to an excluded title) while recording:
    decided per frame from the window stack at grab time (X events up to a round trip after each grab), so
    none of its pixels or its title reach the server or the preview, however the grabs and the map interleave.
    With the old poll (10 Hz) a grab in the ~100 ms after each map or move showed the window."""
    import random
    rng = random.Random()
    sid, token = backend_session(server)
    visible = Xterm("Public Notes", bg="blue", geometry="50x10+1100+300")
    thumbs: list = []
    c = SyncCaptureClient(token, server.url)
    c.on_event(lambda ev: thumbs.append(ev.payload), ["thumbnail"])
    opened = 0
    try:
        c.start_preview(["display:1"])   # thumbnails come only while a preview is on (a panel watching)
        c.start_session(sid, ["display:1"], spoolDir=str(spool_dir), video={"fps": 4, "max_width": 960},
                        privacy={"exclude_windows": ["secret"]})
        time.sleep(1.5)
        for i in range(10):
            x, y = rng.randrange(50, 1400), rng.randrange(50, 700)
            w = Xterm(f"Vault secret {i}", bg="green", geometry=f"40x12+{x}+{y}")  # returns once it is mapped
            opened += 1
            w.activate()
            time.sleep(rng.uniform(0.05, 0.5))
            for _ in range(rng.randrange(1, 3)):
                w.move(rng.randrange(50, 1400), rng.randrange(50, 700))
                time.sleep(rng.uniform(0.05, 0.4))
            w.close()
            time.sleep(rng.uniform(0.1, 0.4))
        # a public window renamed to an excluded title, then back
        subprocess.run(["xdotool", "set_window", "--name", "my secret plans", visible.wid], check=True)
        time.sleep(1.0)
        subprocess.run(["xdotool", "set_window", "--name", "Public Notes", visible.wid], check=True)
        time.sleep(1.5)
        done = c.stop_session()
    finally:
        c.shutdown()
        visible.close()
    assert opened == 10 and done["status"] == "complete", done
    frags = server_fragments(server.data_dir, sid)
    frames = [img for _, img in iter_video_frames(frags["display:1"])]
    assert len(frames) >= 20, len(frames)
    leaks = [round(_green(im), 4) for im in frames if _green(im) > 1e-4]
    assert not leaks, f"{len(leaks)} of {len(frames)} frames show the excluded window: {leaks[:10]}"
    blue = [im for im in frames if ((im[..., 2] > 150) & (im[..., 0] < 80) & (im[..., 1] < 80)).mean() > 0.005]
    assert len(blue) > len(frames) // 2, "the public window stays visible while it is not excluded"
    metas = [load_fragments([f])[0].meta for f in frags["display:1"]]
    assert not any("secret" in json.dumps(m).lower() for m in metas)
    th = [np.asarray(Image.open(io.BytesIO(base64.b64decode(t["jpeg_b64"]))).convert("RGB")) for t in thumbs
          if t.get("channel_id") == "display:1"]
    assert th and not [g for g in map(_green, th) if g > 2e-3], "a preview thumbnail showed the excluded window"
