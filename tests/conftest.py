"""Shared fixtures: the rig (real X screens + PulseAudio), a real vdbnb server over real sockets."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import rig as testrig
from testkit.backend import Backend, stop_engines
from testkit.tls import share_tls_context
from testkit.server import ServerProc, free_port  # noqa: F401  (fixtures below; free_port for tests)

ROOT = Path(__file__).resolve().parents[1]
share_tls_context()   # httpx.get & co. stop loading every CA certificate per call (176 ms each here): testkit/tls.py


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
    stop_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> Backend:
    return Backend(request.param)


@pytest.fixture(scope="session")
def rig():
    env = rig_env()
    os.environ.update(env)
    return env


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
