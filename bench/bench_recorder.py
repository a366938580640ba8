"""Recorder benchmark on the rig: CPU, stored MB/hour, preview event rates — printed beside the goals.

    RIG_DISPLAY=:98 python bench/bench_recorder.py [--seconds 60] [--fps 1] [--audio-backend sounddevice|parec]

Records display:1 (1920×1080) + mic:default + system_audio:default into a real `vdbnb serve`, while the
screen changes (an xterm running `top`, refreshed every second) and speech plays into the mic and the system
audio part of the time. CPU = recorder process + its capture subprocesses, in % of one core, measured after a
warm-up; stored bytes = the fragment files the server wrote for the session.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._scenes import SCENES, Scene  # noqa: E402

GOALS = {"cpu": 5.0, "mb_h": 30.0, "thumbs": 2.0, "levels": 15.0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    tot = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return tot / os.sysconf("SC_CLK_TCK")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--crf", type=int, default=None)
    ap.add_argument("--video", default=None, help='JSON video options, e.g. {"gop_s": 10, "max_width": 1280}')
    ap.add_argument("--audio", default=None, help='JSON audio options, e.g. {"fragment_s": 0.5}')
    ap.add_argument("--audio-backend", default=os.environ.get("VDBNB_AUDIO_BACKEND", "auto"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--channels", default="display:1,mic:default,system_audio:default")
    ap.add_argument("--scene", default="work", choices=SCENES,
                    help="work: steady typing in a terminal while a page is scrolled (the storage/CPU goal's "
                         "scene); typing: a line typed every 3 s; top: `top` refreshing every second (worst "
                         "case); static: nothing moves (bench/_scenes.py)")
    a = ap.parse_args(argv)
    import rig
    rig.use()                    # the repository's rig; stops what it started at exit
    os.environ["VDBNB_AUDIO_BACKEND"] = a.audio_backend
    from vdbnb.capture import SyncCaptureClient

    work = Path(tempfile.mkdtemp(prefix="vdbnb-bench-"))
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "vdbnb", "serve", "--port", str(port), "--data-dir",
                            str(work / "data")], stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT,
                           env={**os.environ, "VDBNB_AI": "0"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    key = (work / "data" / "api_key").read_text().strip()
    h = {"x-access-token": key}
    d = httpx.post(url + "/collection/default/capture/session", json={"end_user_id": "bench"}, headers=h).json()["data"]
    sid = d.get("id") or d["session_id"]
    token = httpx.post(url + "/capture/session/token", json={}, headers=h).json()["data"]["token"]

    scene = Scene(a.scene).start()
    wav = work / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "This is a benchmark of the vdbnb recorder. It captures the "
                    "screen, the microphone and the system audio, and sends everything to the server."], check=True)
    stop_talk = threading.Event()

    def talk():
        i = 0
        while not stop_talk.is_set():
            dev = "mic_feed" if i % 2 == 0 else "system_out"
            subprocess.run(["paplay", f"--device={dev}", str(wav)])
            i += 1
            stop_talk.wait(3)

    counts = {"thumbnail": 0, "audio-level": 0}
    c = SyncCaptureClient(token, url)
    c.on_event(lambda ev: counts.__setitem__(ev.event, counts[ev.event] + 1), ["thumbnail", "audio-level"])
    video = {"fps": a.fps}
    if a.crf:
        video["crf"] = a.crf
    import json as _json

    if a.video:
        video.update(_json.loads(a.video))

    c.start_session(sid, a.channels.split(","), video=video, audio=_json.loads(a.audio) if a.audio else None,
                    spoolDir=str(work / "spool"))
    th = threading.Thread(target=talk, daemon=True)
    th.start()
    time.sleep(a.warmup)
    pids = proc_tree(c.pid)
    cpu0, n0, t0 = cpu_seconds(pids), dict(counts), time.time()
    per0 = {p: cpu_seconds([p]) for p in pids}
    src0 = c.stats()["sources"]
    time.sleep(a.seconds)
    pids = proc_tree(c.pid)
    cpu1, n1, t1 = cpu_seconds(pids), dict(counts), time.time()
    per = {}
    for p in pids:
        try:
            name = open(f"/proc/{p}/cmdline").read().replace("\0", " ").strip()[-60:]
        except OSError:
            name = str(p)
        per[name] = per.get(name, 0) + 100 * (cpu_seconds([p]) - per0.get(p, 0)) / (t1 - t0)
    stats = c.stats()
    threads = {cid: 100 * (st.get("cpu_s", 0) - src0.get(cid, {}).get("cpu_s", 0)) / (t1 - t0)
               for cid, st in stats["sources"].items()}
    done = c.stop_session()
    c.shutdown()
    stop_talk.set()
    scene.stop()
    dt = t1 - t0
    cpu = 100 * (cpu1 - cpu0) / dt
    media = work / "data" / "media" / sid
    by_chan = {}
    for dd in media.iterdir():
        files = list(dd.glob("*.frag"))
        if files:
            from vdbnb.media.decode import load_fragments

            cid = load_fragments([files[0]])[0].channel_id
            by_chan[cid] = sum(f.stat().st_size for f in files)
    total = sum(by_chan.values())
    rec_s = done["duration"]
    mb_h = total / 1e6 / rec_s * 3600
    thumbs = (n1["thumbnail"] - n0["thumbnail"]) / dt
    n_audio = max(1, sum(1 for x in a.channels.split(",") if not x.startswith("display")))
    levels = (n1["audio-level"] - n0["audio-level"]) / dt / n_audio  # per audio channel
    print(f"\nvdbnb recorder benchmark — {a.channels} (display 1920x1080 at {a.fps:g} fps), scene {a.scene}, "
          f"audio backend {a.audio_backend}, {dt:.0f} s measured after {a.warmup:.0f} s warm-up "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    print(f"{'metric':40s} {'measured':>10s} {'goal':>10s}")
    print(f"{'recorder CPU (% of one core, + children)':40s} {cpu:10.2f} {'<= ' + str(GOALS['cpu']):>10s}  "
          f"{'OK' if cpu <= GOALS['cpu'] else 'MISS'}")
    print(f"{'stored MB/hour (server fragment files)':40s} {mb_h:10.2f} {'<= ' + str(GOALS['mb_h']):>10s}  "
          f"{'OK' if mb_h <= GOALS['mb_h'] else 'MISS'}")
    print(f"{'thumbnails/s (display:1)':40s} {thumbs:10.2f} {'>= ' + str(GOALS['thumbs']):>10s}  "
          f"{'OK' if thumbs >= GOALS['thumbs'] * 0.98 else 'MISS'}")
    print(f"{'audio-level events/s per audio channel':40s} {levels:10.2f} {'>= ' + str(GOALS['levels']):>10s}  "
          f"{'OK' if levels >= GOALS['levels'] else 'MISS'}")
    for name, v in sorted(per.items(), key=lambda x: -x[1]):
        print(f"   cpu {v:6.2f} %  {name}")
    for cid, v in sorted(threads.items()):
        print(f"      of which thread {cid:28s} {v:6.2f} %")
    for cid, b in sorted(by_chan.items()):
        print(f"   {cid:36s} {b / 1e6 / rec_s * 3600:8.2f} MB/h")
    print(f"   upload: {done['upload']}; unacked {done['unacked']}; status {done['status']}")
    print(f"   sources: {stats['sources']}")
    srv.send_signal(signal.SIGTERM)
    srv.wait(15)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("kept", work)


if __name__ == "__main__":
    main()
