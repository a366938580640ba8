"""vdbnb.connect() with nothing configured starts the embedded server, reuses it, and survives SIGKILL."""
from __future__ import annotations

import json
import os
import signal

import pytest

import vdbnb
from testkit import wait_for
from testkit.procs import alive
from vdbnb.errors import AuthenticationError


def test_connect_starts_reuses_and_survives_sigkill(tmp_path, monkeypatch):
    monkeypatch.delenv("VDBNB_URL", raising=False)
    monkeypatch.delenv("VDBNB_API_KEY", raising=False)
    monkeypatch.setenv("VDBNB_DATA_DIR", str(tmp_path / "d"))
    conn = vdbnb.connect()
    info = json.loads((tmp_path / "d" / "server.json").read_text())
    try:
        assert conn.base_url == info["url"] and info["host"] == "127.0.0.1"
        s = conn.create_capture_session("alice", metadata={"k": "v"})
        again = vdbnb.connect()
        assert again.base_url == conn.base_url
        assert json.loads((tmp_path / "d" / "server.json").read_text())["pid"] == info["pid"]
        assert again.get_capture_session(s.id).metadata == {"k": "v"}
        os.kill(info["pid"], signal.SIGKILL)
        wait_for(lambda: not alive(info["pid"]), 30, "the killed server gone")
        old_pid = info["pid"]
        third = vdbnb.connect()   # starts a new server on the same data dir
        info = json.loads((tmp_path / "d" / "server.json").read_text())
        assert info["pid"] != old_pid
        got = third.get_capture_session(s.id)
        assert got.end_user_id == "alice" and got.status == "created"
        assert [x.id for x in third.list_capture_sessions()] == [s.id]
        with pytest.raises(AuthenticationError):
            vdbnb.connect(api_key="sk-wrong", base_url=third.base_url).list_capture_sessions()
    finally:
        try:
            os.kill(info["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_capture_client_finds_the_server_connect_uses(tmp_path, monkeypatch):
    from vdbnb.api.embedded import stop_server
    for var in ("VDBNB_URL", "VDBNB_API_KEY", "VIDEO_DB_API"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VDBNB_DATA_DIR", str(tmp_path / "d"))
    conn = vdbnb.connect()
    try:
        assert not conn.base_url.endswith(":8765")            # a free port, not the default
        client = vdbnb.CaptureClient(conn.generate_client_token())
        assert client.base_url == conn.base_url
    finally:
        stop_server(tmp_path / "d")
