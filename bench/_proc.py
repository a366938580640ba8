"""CPU and memory of a process from /proc (Linux), sampled over an interval."""
from __future__ import annotations

import os
import threading
import time


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / tick


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Samples CPU % of one core and RSS of ``pid`` every ``every`` seconds on a thread."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every = pid, every
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.c0, self.t0 = cpu_seconds(self.pid), time.time()
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every):
            try:
                self.rss.append(rss_mb(self.pid))
            except OSError:
                return

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self.cpu_pct = 100 * (cpu_seconds(self.pid) - self.c0) / max(1e-6, time.time() - self.t0)
        self.rss_max = max(self.rss or [rss_mb(self.pid)])
