"""A real `vdbnb serve` in its own process on a free port (``ServerProc``; ``Server``: with extra arguments,
``--no-ai`` by default), for tests and benches."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from testkit.backend import Backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    """A real `vdbnb serve` in its own process, on a free port, with its own data dir."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict | None = None,
                 backend: "Backend | None" = None):
        self.backend = backend or Backend("sqlite")
        env = {**self.backend.env(), **(env or {})}
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir / "server-test.log"
        self.args: list[str] = []  # extra `vdbnb serve` arguments
        self.launcher: list[str] = [sys.executable, "-m", "vdbnb"]  # how `vdbnb` is run

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return (self.data_dir / "api_key").read_text().strip()

    def start(self, timeout: float = 120) -> "ServerProc":   # a loaded shared box: import + bind can take > 30 s
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*self.launcher, "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir), *self.args], stdout=logf, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()  # a server that never answered is not left running
        raise RuntimeError(f"server did not answer /health within {timeout:.0f}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def webhook_secret(self) -> str:
        return self.backend.webhook_secret(self.data_dir)

    def headers(self, token: str | None = None) -> dict:
        return {"x-access-token": token or self.api_key}


class Server(ServerProc):
    """ServerProc with extra `vdbnb serve` arguments (default ``--no-ai``)."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict | None = None,
                 args: list[str] | None = None):
        super().__init__(data_dir, port, env)
        self.args = ["--no-ai"] if args is None else list(args)
