"""When an embedded server stops by itself.

``vdbnb.connect()`` starts one server per data dir in the background (vdbnb/api/embedded.py) and reuses it.
Every process that starts or reuses it is an *owner*, recorded as ``<pid> <start time>`` lines in
``<data dir>/server.owners``. The server (started with ``--exit-with-owners``) exits

- as soon as none of its owners is alive any more (the kernel that started it exited, and every other kernel
  that reused it too), checked every second; and
- after ``--idle-exit`` seconds (default 300) with no client: no request, no websocket, no recorder link and
  no live capture session. A later ``vdbnb.connect()`` (or a call on a Connection bound to that data dir)
  starts it again on the same data.

A server started by hand (``vdbnb serve``) has neither rule unless given the flags. ``vdbnb stop`` stops the
server of a data dir at once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from ..private_fs import append_private

log = logging.getLogger("vdbnb.server.lifecycle")
OWNERS_FILE = "server.owners"
DEFAULT_IDLE_EXIT_S = 300.0


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (so a recycled pid is not taken for the process we knew), or None
    when it is not running. Where /proc is missing, only whether the pid exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
    except (OSError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def add_owner(data_dir: Path, pid: int | None = None) -> None:
    """Record ``pid`` (default: this process) as an owner of the data dir's embedded server."""
    pid = pid or os.getpid()
    st = start_time(pid)
    if st is None:
        return
    path = Path(data_dir) / OWNERS_FILE
    line = f"{pid} {st}\n"
    try:
        if line in path.read_text().splitlines(keepends=True):
            return
    except OSError:
        pass
    with append_private(path) as f:  # owner-only, like everything in the data dir
        f.write(line.encode())


def live_owners(data_dir: Path) -> list[int]:
    out = []
    try:
        lines = (Path(data_dir) / OWNERS_FILE).read_text().splitlines()
    except OSError:
        return out
    for ln in lines:
        try:
            pid_s, st = ln.split()
            pid = int(pid_s)
        except ValueError:
            continue
        now = start_time(pid)
        if now is not None and (now == st or "?" in (now, st)):
            out.append(pid)
    return out


class ActivityMiddleware:
    """Notes the time of every request and websocket (the idle clock)."""

    def __init__(self, app, lifecycle: "Lifecycle"):
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            self.lifecycle.touch()
        return await self.app(scope, receive, send)


class Lifecycle:
    """Watches owners and idleness on a daemon thread; calls ``stop(reason)`` once when the server should exit."""

    def __init__(self, ctx, exit_with_owners: bool = False, idle_exit_s: float | None = None):
        self.ctx = ctx
        self.exit_with_owners = exit_with_owners
        self.idle_exit_s = idle_exit_s if idle_exit_s and idle_exit_s > 0 else None
        self.last_activity = time.monotonic()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def busy(self) -> bool:
        """A client is connected or a capture is live: never idle then."""
        from .sessions import ACTIVE, STARTING, STOPPING
        if self.ctx.hub.subs or any(n > 0 for n in self.ctx.ingest.connections.values()):
            return True
        row = self.ctx.store.one("SELECT COUNT(*) n FROM sessions WHERE status IN (?,?,?)",
                                 (STARTING, ACTIVE, STOPPING))
        return bool(row and row["n"])

    def reason_to_exit(self) -> str | None:
        if self.exit_with_owners and not live_owners(self.ctx.data_dir):
            try:
                listed = (Path(self.ctx.data_dir) / OWNERS_FILE).read_text().split()
            except OSError as e:
                listed = [str(e)]
            return f"every process that used it has exited (owners: {' '.join(listed) or 'none'})"
        if self.idle_exit_s is not None:
            if self.busy():
                self.touch()
            elif time.monotonic() - self.last_activity > self.idle_exit_s:
                return f"no client for {self.idle_exit_s:.0f}s"
        return None

    def start(self, stop: Callable[[str], None], every: float = 1.0) -> None:
        if not (self.exit_with_owners or self.idle_exit_s):
            return

        def loop() -> None:
            while not self._done.wait(every):
                try:
                    why = self.reason_to_exit()
                except Exception:  # noqa: BLE001 - a watchdog must not die of one bad read
                    log.exception("lifecycle check failed")
                    continue
                if why:
                    log.info("embedded server exits: %s", why)
                    stop(why)
                    return

        self._thread = threading.Thread(target=loop, name="vdbnb-lifecycle", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._done.set()
