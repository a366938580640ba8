"""Processes seen through /proc: RSS, CPU time, descendants, liveness (for load and soak figures)."""
from __future__ import annotations

import os
import time
from pathlib import Path


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid: int) -> int:
    return sum(rss_kb(p) for p in [pid, *descendants(pid)] if Path(f"/proc/{p}").exists())


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = []
            for t in Path(f"/proc/{p}/task").iterdir():
                kids += [int(x) for x in (t / "children").read_text().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_with_env(name: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose environment holds ``name=value``: everything a test
    started (children and grandchildren inherit a marker variable), wherever it was reparented to."""
    import os
    from pathlib import Path
    want = f"{name}={value}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if want not in (d / "environ").read_bytes().split(b"\0"):
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]))
        except OSError:
            continue
    return out


def wait_no_processes_with_env(name: str, value: str, timeout: float = 30.0) -> list[tuple[int, str]]:
    """Wait until no process carries ``name=value``; return those still alive at the deadline."""
    deadline = time.time() + timeout
    left = processes_with_env(name, value)
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = processes_with_env(name, value)
    return left
