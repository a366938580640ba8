"""Start (or reuse) the embedded server for a data dir: one per data dir, bound to 127.0.0.1."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ..config import KEY_FILE, SERVER_FILE
from ..errors import ServerError

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


def ensure_server(data_dir: Path, progress=None) -> dict:
    """Return {url, pid, api_key} of the server for ``data_dir``, starting one if none answers."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two kernels starting at once get one server
        info = running_server(data_dir)
        if info is None:
            info = _spawn(data_dir, progress)
    info["api_key"] = (data_dir / KEY_FILE).read_text().strip()
    return info


def _spawn(data_dir: Path, progress=None) -> dict:
    try:
        (data_dir / SERVER_FILE).unlink()
    except FileNotFoundError:
        pass
    log = open(data_dir / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "vdbnb", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--data-dir", str(data_dir)], stdout=log, stderr=subprocess.STDOUT,
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
