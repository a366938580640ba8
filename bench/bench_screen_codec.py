"""x264 settings for screen content, compared on the SAME input: MB/hour, encode CPU per frame, quality.

    RIG_DISPLAY=:99 python bench/bench_screen_codec.py --capture 300 --input /tmp/work.mkv   # once
    python bench/bench_screen_codec.py --input /tmp/work.mkv [--only NAME,...]

``--capture`` records display 1 of the rig at 1 fps while the ``work`` scene runs (bench/_scenes.py: steady
typing in a terminal, a page scrolled) into a lossless file (H.264 qp 0, yuv420p: exactly what the recorder's
encoder is given), with the capture times. The comparison then replays those frames through the recorder's
own path (unchanged frames skipped, :class:`VideoEncoder` → :class:`Fragmenter`, fragment headers included)
once per setting and prints stored MB/hour of video, encode CPU ms per encoded frame and the PSNR (luma) of
the decoded result against the input. Same input, same process: the rows compare with each other.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_MB_H_TOTAL = 30.0

# name -> VideoEncoder keyword arguments (+ the Fragmenter's fragment length, always 2 s). Every row but
# "default" spells its motion search out: hex/16 is x264's own at these presets, umh/64 the recorder's default.
HEX = {"me": "hex", "merange": 16}
SETTINGS: dict[str, dict] = {
    "default (120 s GOP, veryfast crf32 umh me64)": {},
    "old: 2 s GOP, veryfast crf32": {"gop_s": 2.0, "preset": "veryfast", "crf": 32, "x264": HEX},
    "60 s GOP, veryfast crf32": {"gop_s": 60.0, "preset": "veryfast", "crf": 32, "x264": HEX},
    "60 s GOP, veryfast crf32 stillimage": {"gop_s": 60.0, "preset": "veryfast", "crf": 32, "tune": "stillimage", "x264": HEX},
    "60 s GOP, veryfast crf32 refs4": {"gop_s": 60.0, "preset": "veryfast", "crf": 32, "x264": {**HEX, "ref": 4}},
    "60 s GOP, veryfast crf32 umh me64": {"gop_s": 60.0, "preset": "veryfast", "crf": 32,
                                          "x264": {"me": "umh", "merange": 64}},
    "60 s GOP, faster crf32": {"gop_s": 60.0, "preset": "faster", "crf": 32, "x264": HEX},
    "60 s GOP, medium crf32": {"gop_s": 60.0, "preset": "medium", "crf": 32, "x264": HEX},
    "60 s GOP, veryfast crf35": {"gop_s": 60.0, "preset": "veryfast", "crf": 35, "x264": HEX},
    "60 s GOP, veryfast crf28": {"gop_s": 60.0, "preset": "veryfast", "crf": 28, "x264": HEX},
    "60 s GOP, superfast crf32": {"gop_s": 60.0, "preset": "superfast", "crf": 32, "x264": HEX},
    "120 s GOP, veryfast crf32": {"gop_s": 120.0, "preset": "veryfast", "crf": 32, "x264": HEX},
    "60 s GOP, veryfast crf32 hex me64": {"gop_s": 60.0, "preset": "veryfast", "crf": 32,
                                          "x264": {"me": "hex", "merange": 64}},
    "60 s GOP, veryfast crf32 umh me32": {"gop_s": 60.0, "preset": "veryfast", "crf": 32,
                                          "x264": {"me": "umh", "merange": 32}},
    "60 s GOP, veryfast crf32 umh me64 still": {"gop_s": 60.0, "preset": "veryfast", "crf": 32,
                                                "tune": "stillimage", "x264": {"me": "umh", "merange": 64}},
    "60 s GOP, veryfast crf32 umh me64 refs3": {"gop_s": 60.0, "preset": "veryfast", "crf": 32,
                                                "x264": {"me": "umh", "merange": 64, "ref": 3}},
    "60 s GOP, superfast crf32 umh me64": {"gop_s": 60.0, "preset": "superfast", "crf": 32,
                                           "x264": {"me": "umh", "merange": 64}},
    "60 s GOP, veryfast crf34 umh me64": {"gop_s": 60.0, "preset": "veryfast", "crf": 34,
                                          "x264": {"me": "umh", "merange": 64}},
}


def capture(seconds: float, out: Path, fps: float = 1.0) -> None:
    import rig

    rig.use()
    from bench._scenes import Scene
    from vdbnb.recorder.devices import _mss

    scene = Scene("work").start()
    time.sleep(3)
    oc = av.open(str(out), "w", format="matroska")
    vs = None
    times = []
    sct = _mss()
    mon = sct.monitors[1]
    try:
        t_start = time.time()
        for i in range(int(seconds * fps)):
            delay = t_start + i / fps - time.time()
            if delay > 0:
                time.sleep(delay)
            shot = sct.grab(mon)
            ts = time.time()
            frame = av.VideoFrame.from_ndarray(np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4),
                                               format="bgra")
            frame = frame.reformat(format="yuv420p", interpolation="FAST_BILINEAR")
            if vs is None:
                vs = oc.add_stream("libx264", rate=1000)
                vs.width, vs.height, vs.pix_fmt = frame.width, frame.height, "yuv420p"
                vs.options = {"qp": "0", "preset": "ultrafast"}
                vs.codec_context.time_base = vs.time_base = __import__("fractions").Fraction(1, 1000)
            frame.pts = int(round((ts - t_start) * 1000))
            times.append(ts)
            for p in vs.encode(frame):
                oc.mux(p)
        for p in vs.encode(None):
            oc.mux(p)
    finally:
        oc.close()
        sct.close()
        scene.stop()
    out.with_suffix(".json").write_text(json.dumps({"times": times, "fps": fps}))
    print(f"captured {len(times)} frames into {out} ({out.stat().st_size / 1e6:.1f} MB)")


def load(path: Path) -> tuple[list[av.VideoFrame], list[float], float]:
    meta = json.loads(path.with_suffix(".json").read_text())
    with av.open(str(path)) as c:
        frames = [f for f in c.decode(video=0)]
    return frames, meta["times"][:len(frames)], float(meta["fps"])


def y_plane(f: av.VideoFrame) -> np.ndarray:
    return f.to_ndarray(format="gray").astype(np.float32)


def run(name: str, kw: dict, frames, times, fps) -> dict:
    from vdbnb.media.encode import VideoEncoder
    from vdbnb.media.fragmenter import Fragmenter

    kw = dict(kw)
    enc = VideoEncoder(frames[0].width, frames[0].height, fps=fps, **kw)
    frag = Fragmenter("display:1", "video", "h264", enc.codec_info, max_s=2.0)
    frags, cpu, n_enc, prev = [], 0.0, 0, None
    decoded_at: dict[int, int] = {}   # encoded frame index -> input index
    for i, (f, ts) in enumerate(zip(frames, times)):
        y = f.planes[0]
        raw = bytes(y) + bytes(f.planes[1]) + bytes(f.planes[2])
        if raw == prev:  # the recorder skips an unchanged screen (byte-equal grab)
            frags += frag.tick(ts)
            continue
        prev = raw
        c0 = time.process_time()
        pk = enc.encode(f, ts)
        cpu += time.process_time() - c0
        decoded_at[n_enc] = i
        n_enc += 1
        frags += frag.add(pk, {"window_title": "bench shell", "app": "xterm"})
    c0 = time.process_time()
    frags += frag.add(enc.flush())
    cpu += time.process_time() - c0
    frags += frag.flush()
    total = sum(len(x.pack()) for x in frags)
    keys = sum(1 for x in frags for p in x.packets if p.get("key"))
    # quality: decode the fragments and compare each encoded frame with its input
    from vdbnb.media.decode import iter_video_frames

    psnr = []
    for k, (_pts, rgb) in enumerate(iter_video_frames(frags, fmt="gray")):
        i = decoded_at.get(k)
        if i is None or k % 3:
            continue
        mse = float(np.mean((rgb.astype(np.float32).reshape(-1) - y_plane(frames[i]).reshape(-1)) ** 2))
        psnr.append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
    dur = times[-1] - times[0] + 1 / fps
    return {"name": name, "mb_h": total / 1e6 / dur * 3600, "ms_frame": 1000 * cpu / max(1, n_enc),
            "cpu_pct": 100 * cpu / dur, "encoded": n_enc, "keys": keys, "fragments": len(frags),
            "psnr": float(np.mean(psnr)) if psnr else float("nan"), "psnr_min": float(np.min(psnr)) if psnr else 0}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--capture", type=float, default=0, help="record this many seconds first")
    ap.add_argument("--only", default="", help="comma-separated setting names (substring match)")
    a = ap.parse_args(argv)
    if a.capture:
        capture(a.capture, a.input)
    frames, times, fps = load(a.input)
    changed = sum(1 for i in range(1, len(frames)) if bytes(frames[i].planes[0]) != bytes(frames[i - 1].planes[0]))
    print(f"\nscreen codec comparison — {len(frames)} frames of 1920x1080 at {fps:g} fps ({changed} changed), "
          f"work scene, same input for every row (load average {__import__('os').getloadavg()[0]:.1f})")
    print(f"{'setting':42s} {'MB/h':>7s} {'ms/frame':>9s} {'CPU %':>6s} {'PSNR':>6s} {'min':>6s} {'keys':>5s} "
          f"{'frags':>6s}")
    want = [w.strip() for w in a.only.split(",") if w.strip()]
    for name, kw in SETTINGS.items():
        if want and not any(w in name for w in want):
            continue
        r = run(name, kw, frames, times, fps)
        print(f"{r['name']:42s} {r['mb_h']:7.2f} {r['ms_frame']:9.1f} {r['cpu_pct']:6.2f} {r['psnr']:6.2f} "
              f"{r['psnr_min']:6.2f} {r['keys']:5d} {r['fragments']:6d}", flush=True)
    print(f"(video only; the goal {GOAL_MB_H_TOTAL:g} MB/h is for video + mic + system audio: bench_recorder.py)")


if __name__ == "__main__":
    main()
