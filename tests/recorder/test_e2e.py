"""End to end on the rig: backend session → CaptureClient → recorder → real server → stored fragments →
mux_mp4 assets checked against what the rig played and showed."""
from __future__ import annotations

import subprocess
import time

import av
import numpy as np
import pytest

from vdbnb.media.decode import decode_audio, iter_video_frames, load_fragments
from vdbnb.media.mux import mux_mp4, probe_duration
from testkit import wait_for
from vdbnb.capture import SyncCaptureClient

from rigutil import (ToneStream, Xterm, backend_session, envelope, play, read_wav, resample, seqs,
                     server_fragments, tts, xcorr_max)

MIC_TEXT = "the quick brown fox jumps over the lazy dog near the quiet river bank at noon"
SYS_TEXT = "please remember to buy seven apples, three bananas and a loaf of fresh bread tomorrow"


def decode_mp4_audio(path, rate=16000):
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=rate)
        out = []
        for f in c.decode(audio=0):
            for r in rs.resample(f):
                out.append(r.to_ndarray().reshape(-1))
    return np.concatenate(out)


@pytest.mark.slow
@pytest.mark.rig
def test_end_to_end(rig, server, tmp_path, spool_dir):
    sid, token = backend_session(server)
    mic_wav = tts(tmp_path / "mic.wav", MIC_TEXT, voice="en-us", speed=150)
    sys_wav = tts(tmp_path / "sys.wav", SYS_TEXT, voice="en-gb", speed=190)
    subprocess.run(["xsetroot", "-solid", "black"], check=True)
    win = Xterm("VDBNB Marker Window", bg="red", geometry="60x12+200+300", text="HELLO_DISPLAY_TWO")
    tone = ToneStream("system_out")
    c = SyncCaptureClient(token, server.url)
    try:
        assert c.request_permission("microphone") and c.request_permission("screen_capture")
        ch = c.list_channels()
        assert len(ch.displays) >= 2 and ch.mics.default and ch.system_audio.default
        assert ch.displays.primary.id == "display:1"
        assert ch.mics.default.id == "mic:default" and ch.system_audio.default.id == "system_audio:default"
        d1, d2 = ch.displays.get("display:1"), ch.displays.get("display:2")
        chans = [d1, d2, ch.mics.default, ch.system_audio.default]
        d1.is_primary = True
        assert d1.to_dict() == {"channel_id": "display:1", "type": "video", "name": d1.name, "store": False,
                                "is_primary": True}
        levels = []
        c.on_event(levels.append, ["audio-level"])
        t_start = time.time()
        res = c.start_session(sid, chans, spoolDir=str(spool_dir),
                              video={"fps": 2, "channels": {"display:1": {"fps": 8, "max_width": 960, "skip_static": False}}})
        assert res["status"] == "recording" and not res["skipped"]
        print("start timing", res["timing"])
        c.wait_for("recording-started", 30)
        # both audio capture processes deliver (their level events) before anything is played
        wait_for(lambda: {e.payload["channel_id"] for e in list(levels) if e.payload.get("ts", 0) > t_start}
                 >= {"mic:default", "system_audio:default"}, 60, "audio levels from both capture processes")
        win.activate()
        pm, ps = play(mic_wav, "mic_feed"), play(sys_wav, "system_out")
        time.sleep(1.0)
        win.move(2100, 150)  # onto display 2
        t_moved = time.time()
        pm.wait(15), ps.wait(15)
        time.sleep(0.8)
        # flash + beep at the same instant (root window white for 1.5 s, a 1 kHz beep into system audio)
        t_flash = time.time()
        subprocess.run(["xsetroot", "-solid", "white"], check=True)
        tone.beep(0.3)
        time.sleep(1.5)
        subprocess.run(["xsetroot", "-solid", "black"], check=True)
        while time.time() - t_start < 20:
            time.sleep(0.2)
        t_stop = time.time()
        done = c.stop_session()
        assert done["status"] == "complete", done
        assert not done["unacked"] and not done["lost_channels"]
    finally:
        tone.close()
        win.close()
        c.shutdown()
        subprocess.run(["xsetroot", "-solid", "black"])
    # wall time of the capture: from the recorder's start to its stop (inside the client's call window)
    assert t_start <= done["started_at"] <= done["stopped_at"] <= time.time()
    wall = done["stopped_at"] - done["started_at"]
    print(f"wall {wall:.2f}s (client window {t_stop - t_start:.2f}s), drain {done['drain_s']}s")
    lv = [e.payload for e in levels]
    assert any(x["channel_id"] == "mic:default" and x["rms"] > 0.02 for x in lv)

    frags = server_fragments(server.data_dir, sid)
    assert set(frags) == {"display:1", "display:2", "mic:default", "system_audio:default"}
    for cid, files in frags.items():  # every seq from 0, no gap
        assert seqs(files) == list(range(len(files))), cid

    # --- main export: display 1 + both audio tracks mixed ---------------------------------------------
    main = mux_mp4(tmp_path / "main.mp4", frags["display:1"],
                         [frags["mic:default"], frags["system_audio:default"]])
    dur = probe_duration(main["path"])
    assert abs(dur - wall) < 0.5, f"export lasts {dur:.2f}s for {wall:.2f}s of wall time"
    with av.open(main["path"]) as cont:
        n_video = sum(1 for _ in cont.decode(video=0))
    # the per-channel video options reached each encoder (frame rates themselves are bench_recorder's figure)
    fps = {cid: {load_fragments([f])[0].codec_info.get("fps") for f in frags[cid]} for cid in ("display:1", "display:2")}
    assert fps == {"display:1": {8.0}, "display:2": {2.0}}, fps
    with av.open(mux_mp4(tmp_path / "d2-count.mp4", frags["display:2"])["path"]) as cont:
        n_video2 = sum(1 for _ in cont.decode(video=0))
    assert n_video > n_video2 > 0, (n_video, n_video2)  # 8 fps, every frame vs 2 fps, unchanged frames skipped

    # --- display 2 shows the red window after it moved there ---------------------------------------------
    d2 = mux_mp4(tmp_path / "d2.mp4", frags["display:2"])
    with av.open(d2["path"]) as cont:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in cont.decode(video=0)]
    t_rel = t_moved - d2["start"]
    after = [img for t, img in frames if t > t_rel + 0.7]
    before = [img for t, img in frames if t < t_rel - 0.3]
    red = lambda im: ((im[..., 0] > 180) & (im[..., 1] < 60) & (im[..., 2] < 60)).mean()  # noqa: E731
    assert after and red(after[0]) > 0.02, "the red window is not visible on display 2 after the move"
    assert before and red(before[-1]) < 0.001
    titles = {load_fragments([f])[0].meta.get("window_title") for f in frags["display:2"]}
    assert "VDBNB Marker Window" in titles

    # --- per-channel audio assets correlate with their own sentence ------------------------------------
    env = {}
    for name, wav in (("mic", mic_wav), ("sys", sys_wav)):
        x, r = read_wav(wav)
        env[name] = envelope(resample(x, r, 16000), 16000)
    corr = {}
    for cid, key in (("mic:default", "mic"), ("system_audio:default", "sys")):
        asset = mux_mp4(tmp_path / f"{key}.mp4", None, [frags[cid]])
        a = envelope(decode_mp4_audio(asset["path"]), 16000)
        corr[key] = {k: xcorr_max(a, e)[0] for k, e in env.items()}
    print("envelope correlations", corr)
    assert corr["mic"]["mic"] > 0.7 and corr["mic"]["mic"] > corr["mic"]["sys"] + 0.3
    assert corr["sys"]["sys"] > 0.7 and corr["sys"]["sys"] > corr["sys"]["mic"] + 0.3

    # --- A/V sync: flash (video, 8 fps) vs beep (system audio) ------------------------------------------
    vf = list(iter_video_frames(frags["display:1"]))
    bright = [(p, img[20:60, 20:60].mean()) for p, img in vf]  # a root-window corner
    i1 = next(i for i, (p, b) in enumerate(bright) if p > t_flash - 0.5 and b > 200)
    f0, f1 = bright[i1 - 1][0], bright[i1][0]  # last dark frame, first white frame
    pcm, ts = decode_audio(frags["system_audio:default"])
    seg0 = int((t_flash - 0.5 - ts) * 16000)
    seg = pcm[seg0: seg0 + 16000 * 2]
    e = envelope(seg, 16000, 0.005)
    k = int(np.argmax(e > 0.1))
    t_beep = ts + (seg0 / 16000) + k * 0.005
    flash_est = (f0 + f1) / 2
    print(f"flash between {f0 - t_flash:+.3f} and {f1 - t_flash:+.3f}; beep at {t_beep - t_flash:+.3f} "
          f"(s after the command); offset {t_beep - flash_est:+.3f}")
    assert abs(t_beep - flash_est) <= 0.1 + (f1 - f0) / 2
    assert f0 - 0.1 <= t_beep <= f1 + 0.1
