"""The `vdbnb` command against a real server."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vdbnb", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_info_sessions_search(server):
    info = json.loads(run("--data-dir", str(server.data_dir), "info", "--json").stdout)
    assert info["data_dir"] == str(server.data_dir)
    assert info["api_key_file"] == str(server.data_dir / "api_key")
    assert info["webhook_secret"].startswith("whsec_")
    assert info["server"]["url"] == server.url
    httpx.post(f"{server.url}/collection/default/capture/session", headers=server.headers(),
               json={"end_user_id": "cli-user"}).raise_for_status()
    out = run("--data-dir", str(server.data_dir), "sessions", "--url", server.url).stdout
    assert "cli-user" in out and "created" in out
    out = run("--data-dir", str(server.data_dir), "search", "--url", server.url, "anything").stdout
    assert "no results" in out
    r = run("serve", "--host", "0.0.0.0", "--data-dir", str(server.data_dir))
    assert r.returncode == 2 and "--allow-remote" in r.stderr
