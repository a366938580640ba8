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
    for eng in list(_ENGINES.values()):
        eng.stop()
    _ENGINES.clear()


# ---------------------------------------------------------------- scale-out engines (PostgreSQL, S3)
_ENGINES: dict = {}


def engine(name: str):
    """The session's PostgreSQL ("pg") or SeaweedFS S3 ("s3"), started on first use, stopped at the end."""
    if name not in _ENGINES:
        from tests.engines import Postgres, SeaweedS3, engines_available
        missing = engines_available()
        if missing:
            pytest.fail(f"the scale-out tests need PostgreSQL and S3 engines: {missing}")
        _ENGINES[name] = (Postgres() if name == "pg" else SeaweedS3()).start()
    return _ENGINES[name]


class Backend:
    """Where a test server keeps its state: "sqlite" (the embedded default: SQLite + files in the data dir) or
    "postgresql" (a fresh PostgreSQL database + a fresh S3 prefix on the session's engines)."""

    def __init__(self, name: str):
        self.name = name
        self.database_url = self.media_url = None
        if name == "postgresql":
            self.pg, self.s3 = engine("pg"), engine("s3")
            self.database_url, self.media_url = self.pg.new_database(), self.s3.new_prefix()

    @property
    def shared(self) -> bool:
        return self.name == "postgresql"

    def env(self) -> dict:
        if not self.shared:
            return {}
        return {"VDBNB_DATABASE_URL": self.database_url, "VDBNB_MEDIA_URL": self.media_url, **self.s3.env()}

    def fragments(self, data_dir: Path, sid: str) -> dict[str, bytes]:
        """Stored fragment objects of a session: relative key -> bytes (files or S3 objects)."""
        if self.shared:
            return self.s3.objects(self.media_url, f"media/{sid}/")
        base = Path(data_dir) / "media"
        return {str(p.relative_to(base.parent)): p.read_bytes() for p in (base / sid).rglob("*.frag")}

    def webhook_secret(self, data_dir: Path) -> str:
        """The webhook signing secret: in the shared store (every replica agrees), or the data dir's file."""
        if self.shared:
            import psycopg
            with psycopg.connect(self.database_url) as c:
                return c.execute("SELECT value FROM server_secrets WHERE name='webhook_secret'").fetchone()[0]
        return (Path(data_dir) / "webhook_secret").read_text().strip()

    def execute(self, data_dir: Path, sql: str) -> int:
        """Run one statement on the store behind a (stopped) server's back; returns the row count."""
        if self.shared:
            import psycopg
            with psycopg.connect(self.database_url, autocommit=True) as c:
                return c.execute(sql).rowcount
        import sqlite3
        db = sqlite3.connect(Path(data_dir) / "vdbnb.sqlite3")
        try:
            with db:
                return db.execute(sql).rowcount
        finally:
            db.close()

    def database_bytes(self, data_dir: Path) -> bytes:
        """Everything the store holds, as raw bytes (the SQLite files, or a PostgreSQL dump)."""
        if self.shared:
            return self.pg.dump(self.database_url)
        return b"".join(p.read_bytes() for p in Path(data_dir).glob("vdbnb.sqlite3*"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> Backend:
    return Backend(request.param)


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
