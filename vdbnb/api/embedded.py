"""Start (or reuse) the embedded server for a data dir: one per data dir, bound to 127.0.0.1.

The process that starts it and every process that reuses it are its owners (``server.owners``); it exits by
itself once they have all exited, or after a few idle minutes (vdbnb/server/lifecycle.py). ``stop_server`` (the
``vdbnb stop`` command) stops it at once."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ..config import KEY_FILE, SERVER_FILE
from ..errors import ServerError
from ..server.lifecycle import DEFAULT_IDLE_EXIT_S, OWNERS_FILE, add_owner, live_owners, start_time
from ..private_fs import append_private, open_private, private_dir

START_TIMEOUT = 60.0


def _alive(info: dict) -> bool:
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return False
    try:
        return httpx.get(info["url"] + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(data_dir: Path) -> dict | None:
    path = Path(data_dir) / SERVER_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if _alive(info) else None


def ensure_server(data_dir: Path, progress=None, idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> dict:
    """Return {url, pid, api_key} of the server for ``data_dir``, starting one if none answers."""
    data_dir = private_dir(data_dir)  # 0700 before anything is written in it
    with os.fdopen(open_private(data_dir / ".server.lock", os.O_WRONLY | os.O_CREAT), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two kernels starting at once get one server
        info = running_server(data_dir)
        if info is None:
            # owners of an earlier server that are still alive stay owners (they may use it again)
            alive = live_owners(data_dir)
            (data_dir / OWNERS_FILE).write_text("".join(f"{p} {start_time(p)}\n" for p in alive))
            add_owner(data_dir)
            info = _spawn(data_dir, progress, idle_exit_s)
        else:
            add_owner(data_dir)
    info["api_key"] = (data_dir / KEY_FILE).read_text().strip()
    return info


def _spawn(data_dir: Path, progress=None, idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> dict:
    try:
        (data_dir / SERVER_FILE).unlink()
    except FileNotFoundError:
        pass
    log = append_private(data_dir / "server.log")
    proc = subprocess.Popen([sys.executable, "-m", "vdbnb", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--data-dir", str(data_dir), "--exit-with-owners", "--idle-exit", str(idle_exit_s)],
                            stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # inherits the environment
    if progress:
        progress("starting the embedded vdbnb server")
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = (data_dir / "server.log").read_text(errors="replace")[-2000:]
            raise ServerError(f"the embedded server exited with code {proc.returncode}. Its log "
                              f"({data_dir / 'server.log'}) ends with:\n{tail}")
        info = running_server(data_dir)
        if info and info.get("pid") == proc.pid:
            return info
        time.sleep(0.1)
    proc.kill()
    raise ServerError(f"the embedded server did not answer within {START_TIMEOUT:.0f}s; see "
                      f"{data_dir / 'server.log'}")


def stop_server(data_dir: Path, timeout: float = 20.0) -> int | None:
    """Stop the server of ``data_dir`` (the pid in its server.json, if it is a vdbnb server): SIGTERM, then
    SIGKILL after ``timeout``. Returns the pid stopped, or None when none was running."""
    try:
        info = json.loads((Path(data_dir) / SERVER_FILE).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"vdbnb" not in b" ".join(cmd) or b"serve" not in cmd:
            return None                       # that pid is some other program now: not ours to stop
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        deadline = time.time() + wait
        while time.time() < deadline:
            if start_time(pid) is None:
                return pid
            time.sleep(0.1)
    return pid
