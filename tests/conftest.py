"""Shared fixtures: the rig (real X screens + PulseAudio), a real vdbnb server over real sockets."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import rig as testrig

ROOT = Path(__file__).resolve().parents[1]


_RIG: testrig.Rig | None = None


def rig_env() -> dict:
    """Bring the repository's rig (rig/rig-up.sh) up on ``$RIG_DISPLAY`` (idempotent) and return the
    environment variables it exports. What this process started is stopped when pytest finishes
    (:func:`pytest_sessionfinish`); a rig that was already up is left as it was."""
    global _RIG
    if _RIG is None:
        _RIG = testrig.up()
    return dict(_RIG.env)


def pytest_sessionfinish(session, exitstatus):
    if _RIG is not None:
        _RIG.down()


@pytest.fixture(scope="session")
def rig():
    env = rig_env()
    os.environ.update(env)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    """A real `vdbnb serve` in its own process, on a free port, with its own data dir."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict | None = None):
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

    def headers(self, token: str | None = None) -> dict:
        return {"x-access-token": token or self.api_key}


@pytest.fixture
def server(tmp_path):
    s = ServerProc(tmp_path / "data").start()
    yield s
    s.stop()


@pytest.fixture
def server_factory(tmp_path):
    made = []

    def make(**kw):
        s = ServerProc(tmp_path / f"data{len(made)}", **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
