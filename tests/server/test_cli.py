"""The `vdbnb` command against a real server."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import httpx


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vdbnb", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_info_sessions_search(server):
    info = json.loads(run("--data-dir", str(server.data_dir), "info", "--json", env=server.env).stdout)
    assert info["data_dir"] == str(server.data_dir)
    assert info["api_key_file"] == str(server.data_dir / "api_key")
    if server.backend.shared:  # the secrets live in the store, not in a file of the data dir
        assert info["webhook_secret_file"] is None
    else:
        assert info["webhook_secret_file"] == str(server.data_dir / "webhook_secret")
    secret = server.webhook_secret
    assert "webhook_secret" not in info and "api_key" not in info      # where they are, not what they are
    plain = run("--data-dir", str(server.data_dir), "info", env=server.env).stdout
    assert secret not in plain and server.api_key not in plain and "--show-secrets" in plain
    shown = json.loads(run("--data-dir", str(server.data_dir), "info", "--json", "--show-secrets",
                           env=server.env).stdout)
    assert shown["webhook_secret"] == secret and shown["api_key"] == server.api_key
    assert set(info["engines"]) == {"stt", "ocr", "embeddings"} and all(e["installed"] for e in info["engines"].values())
    b = info["backends"]  # the backends in use, and on a shared store the processes sharing it
    if server.backend.shared:
        assert b["store"] == {"kind": "postgresql", "location": server.backend.database_url}
        assert b["media"]["kind"] == "s3" and b["media"]["location"] == server.backend.media_url.split("?")[0]
        assert [p["role"] for p in b["processes"]] == ["all"] and b["processes"][0]["heartbeat_age_s"] < 10
    else:
        assert b["store"] == {"kind": "sqlite", "location": str(server.data_dir / "vdbnb.sqlite3")}
        assert b["media"] == {"kind": "files", "location": str(server.data_dir)}
    health = httpx.get(server.url + "/health").json()["data"]
    assert health["backends"]["store"]["kind"] == b["store"]["kind"]
    assert health["backends"]["media"]["kind"] == b["media"]["kind"]
    assert info["server"]["url"] == server.url
    httpx.post(f"{server.url}/collection/default/capture/session", headers=server.headers(),
               json={"end_user_id": "cli-user"}).raise_for_status()
    out = run("--data-dir", str(server.data_dir), "sessions", "--url", server.url).stdout
    assert "cli-user" in out and "created" in out
    out = run("--data-dir", str(server.data_dir), "search", "--url", server.url, "anything").stdout
    assert "no results" in out
    r = run("serve", "--host", "0.0.0.0", "--data-dir", str(server.data_dir))
    assert r.returncode == 2 and "--allow-remote" in r.stderr


def test_serve_help_documents_every_option_with_its_default():
    from vdbnb import cli
    out = " ".join(run("serve", "--help").stdout.split())
    out = out[out.index("options:"):]
    serve = cli.build_parser()._subparsers._group_actions[0].choices["serve"]
    options = [a for a in serve._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 8
    for a in options:
        assert a.help and a.option_strings[0] in out, f"{a.option_strings} is not documented"
        if a.default is None or a.default is argparse.SUPPRESS:     # from the environment: said in the help
            assert "default: $VDBNB_" in a.help, a.option_strings
        else:
            seg = out[out.index(a.option_strings[0] + " "):]
            assert f"(default: {a.default})" in seg[:500], (a.option_strings, seg[:300])
