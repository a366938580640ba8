"""Scale-out tests: api replicas and workers sharing a real PostgreSQL and a real S3 store (testkit/engines.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testkit.backend import Backend
from testkit.server import ServerProc, free_port


class WorkerProc:
    """A real `vdbnb worker` process with its /health on a free port."""

    def __init__(self, data_dir: Path, backend: Backend, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.backend = backend
        self.port = free_port()
        self.env = {**os.environ, **backend.env(), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir / "worker.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> "WorkerProc":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "vdbnb", "worker", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("worker did not answer /health in time")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=5).json()["data"]

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


@pytest.fixture
def cluster(tmp_path):
    """make(name, role) → started processes on one PostgreSQL database + one S3 prefix; all stopped after."""
    backend = Backend("postgresql")
    key = "sk-scale-test-" + os.urandom(8).hex()
    made: list = []

    def replica(name: str, role: str = "api", env: dict | None = None) -> ServerProc:
        s = ServerProc(tmp_path / name, backend=backend, env={"VDBNB_API_KEY": key, **(env or {})})
        s.args = ["--role", role]
        made.append(s)
        return s.start()

    def worker(name: str, env: dict | None = None) -> WorkerProc:
        w = WorkerProc(tmp_path / name, backend, env={"VDBNB_API_KEY": key, **(env or {})})
        made.append(w)
        return w.start()

    class Cluster:
        pass

    c = Cluster()
    c.backend, c.key, c.replica, c.worker = backend, key, replica, worker
    yield c
    for p in made:
        p.stop()
