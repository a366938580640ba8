"""Recorder benchmark on the rig: CPU, stored MB/hour, preview event rates — printed beside the goals.

    RIG_DISPLAY=:98 python bench/bench_recorder.py [--seconds 60] [--fps 1] [--scene work] [--preview]
        [--compare OLD_TREE [--compare OTHER_TREE ...] --rounds 3] [--audio-backend sounddevice|parec] [--profile FILE]

Records display:1 (1920×1080) + mic:default + system_audio:default into a real `vdbnb serve`, while the
screen changes (``--scene``, bench/_scenes.py) and speech plays into the mic and the system audio part of the
time. CPU = recorder process + its capture subprocesses, in % of one core, measured after a warm-up; stored
bytes = the fragment files the server wrote for the session. ``--preview`` also asks for the preview (a panel
watching: thumbnails; levels come with every recording).

``--compare OLD_TREE`` runs the recorder alternately from another source tree (e.g. ``git archive main | tar
-x -C /tmp/base``; repeat the option for several) and from this one, ``--rounds`` times each, on the same server, scene and speech: the box
is shared and noisy, so only a comparison within one run means much. Each round is a fresh recording.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
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


def cpu_seconds(pids: list[int], task_of: int | None = None) -> float:
    """utime + stime of processes (or of one thread ``task_of``'s task ``pids[0]``), in seconds."""
    tot = 0
    for p in pids:
        path = f"/proc/{task_of}/task/{p}/stat" if task_of else f"/proc/{p}/stat"
        try:
            with open(path) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return tot / os.sysconf("SC_CLK_TCK")


class Bench:
    """The server, the scene and the speech, shared by every round; :meth:`round` records once."""

    def __init__(self, a):
        self.a = a
        self.work = Path(tempfile.mkdtemp(prefix="vdbnb-bench-"))
        port = free_port()
        self.srv = subprocess.Popen([sys.executable, "-m", "vdbnb", "serve", "--port", str(port), "--data-dir",
                                     str(self.work / "data")], stdout=open(self.work / "server.log", "wb"),
                                    stderr=subprocess.STDOUT, env={**os.environ, "VDBNB_AI": "0"})
        atexit.register(_cleanup, self.srv, self.work, a.keep)   # also when the run fails half-way
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        self.h = {"x-access-token": (self.work / "data" / "api_key").read_text().strip()}
        self.scene = Scene(a.scene).start()
        atexit.register(_quietly, self.scene.stop)
        self.wav = self.work / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(self.wav), "This is a benchmark of the vdbnb recorder. It captures "
                        "the screen, the microphone and the system audio, and sends everything to the server."],
                       check=True)
        self.stop_talk = threading.Event()
        threading.Thread(target=self._talk, daemon=True).start()

    def _talk(self):
        i = 0
        while not self.stop_talk.is_set():
            dev = "mic_feed" if i % 2 == 0 else "system_out"
            subprocess.run(["paplay", f"--device={dev}", str(self.wav)])
            i += 1
            self.stop_talk.wait(3)

    def close(self):
        self.stop_talk.set()
        self.scene.stop()

    def round(self, tree: Path | None, preview: bool, profile: str | None = None) -> dict:
        """One recording with the recorder from ``tree`` (None: this tree): CPU, rates, stored bytes."""
        from vdbnb.capture import SyncCaptureClient

        a = self.a
        d = httpx.post(self.url + "/collection/default/capture/session", json={"end_user_id": "bench"},
                       headers=self.h).json()["data"]
        sid = d.get("id") or d["session_id"]
        token = httpx.post(self.url + "/capture/session/token", json={}, headers=self.h).json()["data"]["token"]
        counts = {"thumbnail": 0, "audio-level": 0}
        # -P: the recorder imports vdbnb from PYTHONPATH, not from the current directory (python -m puts it first)
        c = SyncCaptureClient(token, self.url, env={"PYTHONPATH": str(tree or ROOT)},
                              recorder_cmd=[sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []),
                                            "-m", "vdbnb.recorder"])

        def shut_client():
            _quietly(c.shutdown)

        atexit.register(shut_client)
        c.on_event(lambda ev: counts.__setitem__(ev.event, counts[ev.event] + 1), ["thumbnail", "audio-level"])
        video = {"fps": a.fps, **({"crf": a.crf} if a.crf else {}), **(json.loads(a.video) if a.video else {})}
        if preview:
            c.start_preview(a.channels.split(","))
        c.start_session(sid, a.channels.split(","), video=video, audio=json.loads(a.audio) if a.audio else None,
                        spoolDir=str(self.work / "spool"))
        time.sleep(a.warmup)
        pid = c.pid
        pids = proc_tree(pid)
        st0 = c.stats()
        tids = st0.get("threads") or {}     # thread name -> native id (recorders that report them)
        cpu0, n0, t0 = cpu_seconds(pids), dict(counts), time.time()
        per0 = {p: cpu_seconds([p]) for p in pids}
        th0 = {n: cpu_seconds([t], task_of=pid) for n, t in tids.items()}
        spy = None
        if profile:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration", str(int(a.seconds)),
                                    "--rate", "200", "--threads", "--nonblocking", "--format", "raw", "-o",
                                    profile], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(a.seconds)
        pids = proc_tree(pid)
        cpu1, n1, t1 = cpu_seconds(pids), dict(counts), time.time()
        dt = t1 - t0
        per: dict[str, float] = {}
        for p in pids:
            try:
                name = open(f"/proc/{p}/cmdline").read().replace("\0", " ").strip()
                name = "parec" if "parec" in name else "worker" if "audio_worker" in name else \
                    "recorder" if p == pid else name[-60:]
            except OSError:
                name = str(p)
            per[name] = per.get(name, 0) + 100 * (cpu_seconds([p]) - per0.get(p, 0)) / dt
        st1 = c.stats()
        threads = {n: 100 * (cpu_seconds([t], task_of=pid) - th0[n]) / dt for n, t in tids.items()}
        if not threads:   # an older recorder: its sources' own thread_time
            threads = {cid: 100 * (s.get("cpu_s", 0) - st0["sources"].get(cid, {}).get("cpu_s", 0)) / dt
                       for cid, s in st1["sources"].items()}
        if spy is not None:
            spy.wait(30)
        done = c.stop_session()
        c.shutdown()
        atexit.unregister(shut_client)
        by_chan = {}
        from vdbnb.media.decode import load_fragments

        for dd in (self.work / "data" / "media" / sid).iterdir():
            files = list(dd.glob("*.frag"))
            if files:
                by_chan[load_fragments([files[0]])[0].channel_id] = sum(f.stat().st_size for f in files)
        n_audio = max(1, sum(1 for x in a.channels.split(",") if not x.startswith("display")))
        return {"cpu": 100 * (cpu1 - cpu0) / dt, "per_proc": per, "threads": threads, "dt": dt,
                "mb_h": sum(by_chan.values()) / 1e6 / done["duration"] * 3600,
                "by_chan": {k: v / 1e6 / done["duration"] * 3600 for k, v in by_chan.items()},
                "thumbs": (n1["thumbnail"] - n0["thumbnail"]) / dt,
                "levels": (n1["audio-level"] - n0["audio-level"]) / dt / n_audio,
                "done": done, "sources": st1["sources"], "load": os.getloadavg()[0]}


def _row(label: str, value: float, goal: str, ok: bool | None) -> str:
    return f"{label:44s} {value:10.2f} {goal:>10s}  {'' if ok is None else 'OK' if ok else 'MISS'}"


def report(name: str, rs: list[dict], a) -> None:
    """The median of the rounds beside the goals, each round's figure, and the last round's breakdown."""
    med = {k: statistics.median(r[k] for r in rs) for k in ("cpu", "mb_h", "thumbs", "levels")}
    print(f"\n== {name}: median of {len(rs)} round(s); rounds: "
          + ", ".join(f"{r['cpu']:.2f} % (load {r['load']:.1f})" for r in rs))
    print(f"{'metric':44s} {'measured':>10s} {'goal':>10s}")
    print(_row("recorder CPU (% of one core, + children)", med["cpu"], f"<= {GOALS['cpu']}", med["cpu"] <= GOALS["cpu"]))
    print(_row("stored MB/hour (server fragment files)", med["mb_h"], f"<= {GOALS['mb_h']}",
               med["mb_h"] <= GOALS["mb_h"]))
    if a.preview:
        print(_row("thumbnails/s (display:1, preview on)", med["thumbs"], f">= {GOALS['thumbs']}",
                   med["thumbs"] >= GOALS["thumbs"] * 0.98))
    else:
        print(_row("thumbnails/s (display:1, no preview)", med["thumbs"], "", None))
    print(_row("audio-level events/s per audio channel", med["levels"], f">= {GOALS['levels']}",
               med["levels"] >= GOALS["levels"]))
    last = rs[-1]
    for proc, v in sorted(last["per_proc"].items(), key=lambda x: -x[1]):
        print(f"   cpu {v:6.2f} %  {proc}")
    for th, v in sorted(last["threads"].items(), key=lambda x: -x[1]):
        print(f"      of which thread {th:28s} {v:6.2f} %")
    for cid, v in sorted(last["by_chan"].items()):
        print(f"   {cid:36s} {v:8.2f} MB/h")
    done = last["done"]
    print(f"   upload: {done['upload']}; unacked {done['unacked']}; status {done['status']}")
    print(f"   sources: {last['sources']}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--crf", type=int, default=None)
    ap.add_argument("--video", default=None, help='JSON video options, e.g. {"gop_s": 10, "max_width": 1280}')
    ap.add_argument("--audio", default=None, help='JSON audio options, e.g. {"fragment_s": 0.5}')
    ap.add_argument("--audio-backend", default=os.environ.get("VDBNB_AUDIO_BACKEND", "auto"))
    ap.add_argument("--preview", action="store_true", help="a panel watching: startPreview before recording")
    ap.add_argument("--compare", type=Path, action="append", default=[], metavar="OLD_TREE",
                    help="alternate rounds with the recorder from this source tree (A, C, D, ... when repeated) "
                         "and from this one (B)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="sample this tree's recorder with py-spy (pip install py-spy) in the last round: "
                         "collapsed stacks per thread, written to FILE")
    ap.add_argument("--channels", default="display:1,mic:default,system_audio:default")
    ap.add_argument("--scene", default="work", choices=SCENES,
                    help="work: steady typing in a terminal while a page is scrolled (the storage/CPU goal's "
                         "scene); typing: a line typed every 3 s; top: `top` refreshing every second (worst "
                         "case); static: nothing moves (bench/_scenes.py)")
    a = ap.parse_args(argv)
    if a.compare and sys.version_info < (3, 11):
        ap.error("--compare needs Python 3.11+ (python -P keeps the current directory off sys.path)")
    import rig
    rig.use()                    # the repository's rig; stops what it started at exit
    os.environ["VDBNB_AUDIO_BACKEND"] = a.audio_backend
    b = Bench(a)
    variants = [(f"{'ACDEFG'[i]} {t}", t.resolve()) for i, t in enumerate(a.compare)] + [("B this tree", None)]
    results: dict[str, list[dict]] = {v[0]: [] for v in variants}
    try:
        for i in range(a.rounds):
            for name, tree in variants:
                prof = a.profile if a.profile and tree is None and i == a.rounds - 1 else None
                r = b.round(tree, a.preview, prof)
                results[name].append(r)
                print(f"round {i + 1} {name}: {r['cpu']:.2f} % (load {r['load']:.1f})", flush=True)
    finally:
        b.close()
    print(f"\nvdbnb recorder benchmark — {a.channels} (display 1920x1080 at {a.fps:g} fps), scene {a.scene}, "
          f"audio backend {a.audio_backend}, preview {'on' if a.preview else 'off'}, {a.seconds:.0f} s measured "
          f"after {a.warmup:.0f} s warm-up per round ({os.cpu_count()} cores, load average now "
          f"{os.getloadavg()[0]:.1f})")
    for name, _ in variants:
        report(name, results[name], a)
    rb = results[variants[-1][0]]
    for name, _ in variants[:-1]:
        pairs = [f"{x['cpu'] / y['cpu']:.2f}" for x, y in zip(results[name], rb) if y["cpu"]]
        print(f"\nCPU ratio per round ({name[0]} / B): {', '.join(pairs)}")
    if a.keep:
        print("kept", b.work)


def _quietly(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - best effort at exit
        pass


def _cleanup(srv: subprocess.Popen, work: Path, keep: bool) -> None:
    """Stop the bench's server (by its pid) and remove its folder, whether the run finished or failed."""
    if srv.poll() is None:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(15)
        except subprocess.TimeoutExpired:
            srv.kill()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
