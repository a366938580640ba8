"""Export memory of a long session: peak RSS of the export (mux) process, printed beside the goal.

    python bench/bench_export.py [--hours 6] [--keep DIR]

Builds a synthetic session of ``--hours`` as stored fragment files (testkit.media.long_session: real Opus
and H.264 packets, repeated and re-stamped: 1 fps video in 2 s fragments continuing 60 s GOPs, a microphone
and system audio in 0.5 s fragments), then exports it with :func:`vdbnb.media.mux.mux_mp4` — what the
server's export runs — in a fresh process, and reports that process's peak RSS, its CPU time and the
output's duration. The old muxer held every audio channel of the range as 48 kHz float32 (~690 MB per
channel-hour) plus their mix.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_RSS_MB = 300.0

MUX = """
import json, resource, sys, time
from pathlib import Path
from vdbnb.media.mux import mux_mp4
root = Path(sys.argv[1])
t = time.time()
s = mux_mp4(root / "out.mp4", root / "video", [root / "mic", root / "system_audio"])
ru = resource.getrusage(resource.RUSAGE_SELF)
# VmHWM: this process's own peak (ru_maxrss carries the parent's over the fork + exec)
hwm = int([line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1])
print(json.dumps({"rss_mb": hwm / 1024, "cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": time.time() - t,
                  "duration": s["duration"], "video_packets": s["video_packets"]}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the session here and keep it")
    a = ap.parse_args(argv)
    from testkit.media import long_session

    root = a.keep or Path(tempfile.mkdtemp(prefix="vdbnb-export-"))
    try:
        if not (root / "video").exists():
            t = time.time()
            long_session(root, a.hours)
            print(f"built a {a.hours:g} h session in {time.time() - t:.0f} s: "
                  f"{sum(1 for _ in root.rglob('*.frag'))} fragment files")
        r = subprocess.run([sys.executable, "-c", MUX, str(root)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        if r.returncode:
            sys.exit(r.stderr[-3000:])
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"\nexport of a {a.hours:g} h session (1 fps video + 2 audio channels), load average "
              f"{os.getloadavg()[0]:.1f}")
        print(f"{'metric':40s} {'measured':>10s} {'goal':>10s}")
        ok = "OK" if m["rss_mb"] <= GOAL_RSS_MB else "MISS"
        print(f"{'export process peak RSS (MB)':40s} {m['rss_mb']:10.1f} {'<= ' + str(GOAL_RSS_MB):>10s}  {ok}")
        print(f"   duration {m['duration'] / 3600:.2f} h, {m['video_packets']} video packets; CPU "
              f"{m['cpu_s']:.0f} s, wall {m['wall_s']:.0f} s")
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
