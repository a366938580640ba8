"""The server tests run against both backends: the embedded default (SQLite + files) and PostgreSQL + S3."""
from __future__ import annotations

import pytest

from testkit.server import ServerProc


@pytest.fixture
def server(tmp_path, backend):
    s = ServerProc(tmp_path / "data", backend=backend).start()
    yield s
    s.stop()
