"""Exports stream: the memory an export takes does not grow with the session's length (it used to hold every
audio channel of the whole range as 48 kHz float32: ~690 MB per channel-hour)."""
from __future__ import annotations

import json
import subprocess
import sys

import av

from testkit.media import long_session

# the peak RSS of this process's own memory: VmHWM. Not getrusage's ru_maxrss, which Linux carries over from
# the parent's memory across the fork/vfork + exec (a pytest process that grew to 450 MB made it 450-490 MB)
MUX = """
import json, sys
from pathlib import Path
from vdbnb.media.mux import mux_mp4
root = Path(sys.argv[1])
s = mux_mp4(root / "out.mp4", root / "video", [root / "mic", root / "system_audio"])
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"rss_mb": int(hwm) / 1024, "duration": s["duration"], "video_packets": s["video_packets"]}))
"""


def _export(root) -> dict:
    r = subprocess.run([sys.executable, "-c", MUX, str(root)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_long_session_export_memory_is_bounded(tmp_path):
    short = long_session(tmp_path / "short", 2.5 / 60)
    long = long_session(tmp_path / "long", 10 / 60)
    a, b = _export(tmp_path / "short"), _export(tmp_path / "long")
    assert abs(b["duration"] - 600) < 1 and b["video_packets"] == 600
    # two audio channels of 10 min held whole would be 2 x 115 MB (+ their mix): the old muxer peaked > 400 MB
    assert b["rss_mb"] <= 300, b
    assert b["rss_mb"] - a["rss_mb"] < 40, (a, b)   # 4x the length, not 4x the memory
    with av.open(str(tmp_path / "long" / "out.mp4")) as c:
        assert abs(c.duration / av.time_base - 600) < 0.5
        assert {s.type for s in c.streams} == {"video", "audio"}
    assert short and long
