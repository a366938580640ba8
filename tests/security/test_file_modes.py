"""Private files on every path that creates them: the data dir made by ``vdbnb.connect()`` (the main path),
the server's database, media, search index, exports and clips, and the recorder's spool: directories 0700,
files 0600, even when the user's umask is 022; vdbnb's own processes run with umask 077 as a backstop."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from testkit.media import audio_fragments


def _loose(root: Path) -> list[str]:
    """Everything under ``root`` (and root itself) readable or writable by group or others."""
    out = []
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        if stat.S_IMODE(os.lstat(p).st_mode) & 0o077:
            out.append(f"{oct(stat.S_IMODE(os.lstat(p).st_mode))} {p.relative_to(root.parent)}")
    return out


def _umask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc status")


def test_connect_makes_everything_private_under_umask_022(tmp_path):
    ddir = tmp_path / "home" / "vdbnb-data"
    code = textwrap.dedent(f"""
        import os, time
        os.umask(0o022)
        import httpx, vdbnb
        from testkit.media import audio_fragments
        conn = vdbnb.connect(data_dir={str(ddir)!r})
        h = {{"x-access-token": conn.api_key}}
        url = conn.base_url
        sid = httpx.post(url + "/collection/default/capture/session", headers=h,
                         json={{"end_user_id": "m"}}).json()["data"]["session_id"]
        tok = {{"x-access-token": httpx.post(url + "/capture/session/token", headers=h, json={{}}).json()["data"]["token"]}}
        httpx.post(url + "/capture/session/start", headers=tok, json={{"session_id": sid, "channels": [
            {{"channel_id": "mic:default", "type": "audio", "store": True}}]}}).raise_for_status()
        t0 = time.time() - 3
        for f in audio_fragments("mic:default", 1.0, t0=t0):
            httpx.post(url + f"/capture/session/{{sid}}/fragment", headers=tok, content=f.pack()).raise_for_status()
        rid = httpx.get(url + f"/collection/default/capture/session/{{sid}}", headers=h).json()["data"]["rtstreams"][0]["id"]
        d = httpx.get(url + f"/rtstream/{{rid}}/stream", headers=h, params={{"start": t0, "end": t0 + 1}}).json()["data"]
        assert httpx.get(d["stream_url"]).status_code == 200          # a clip file
        httpx.post(url + f"/capture/session/{{sid}}/stop", headers=tok).raise_for_status()
        for _ in range(100):                                           # an export
            e = httpx.post(url + f"/collection/default/capture/session/{{sid}}/export", headers=h).json()["data"]
            if e.get("export_status") != "exporting":
                break
            time.sleep(0.2)
        assert e["export_status"] == "exported", e
        httpx.post(url + "/rtstream/collection/default/search", headers=h, json={{"query": "anything"}})
    """)
    env = {**os.environ, "VDBNB_AI": "0"}
    env.pop("VDBNB_URL", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240,
                       cwd=tmp_path)
    info = json.loads((ddir / "server.json").read_text()) if (ddir / "server.json").exists() else None
    try:
        assert r.returncode == 0, r.stderr[-3000:]
        assert info and _umask(info["pid"]) == 0o077, "the server runs with umask 077"
        assert (ddir / "vdbnb.sqlite3").exists() and list((ddir / "media").rglob("*.frag"))
        assert list((ddir / "exports").rglob("*.mp4")) and list((ddir / "clips").rglob("*.mp4"))
        assert stat.S_IMODE(os.stat(ddir).st_mode) == 0o700
        assert _loose(ddir) == []
    finally:
        if info:
            try:
                os.kill(info["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
            for _ in range(100):
                try:
                    os.kill(info["pid"], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


def test_an_existing_loose_data_dir_is_tightened(server_factory, tmp_path):
    d = tmp_path / "loose"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    srv = server_factory()
    srv.data_dir = d
    srv.log = tmp_path / "loose.log"
    srv.start()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_recorder_spool_is_private_under_umask_022(tmp_path):
    from vdbnb.recorder.uplink import Spool
    old = os.umask(0o022)
    try:
        sp = Spool(tmp_path / "cache" / "spool", "cap-1")
        for f in audio_fragments("mic:default", 1.0):
            sp.write(f)
    finally:
        os.umask(old)
    assert list((tmp_path / "cache").rglob("*.frag"))
    assert _loose(tmp_path / "cache") == []


def test_recorder_process_runs_with_umask_077(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "vdbnb.recorder"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, preexec_fn=lambda: os.umask(0o022))
    try:
        p.stdin.write('videodb_recorder|{"command": "ping", "commandId": "1", "params": {}}\n')
        p.stdin.flush()
        assert "pong" in p.stdout.readline()
        assert _umask(p.pid) == 0o077
    finally:
        p.stdin.close()
        p.wait(15)


def test_server_fragment_dirs_are_private(server):
    h = server.headers()
    sid = httpx.post(f"{server.url}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "m"}).json()["data"]["session_id"]
    tok = {"x-access-token": httpx.post(f"{server.url}/capture/session/token", headers=h, json={}).json()["data"]["token"]}
    httpx.post(f"{server.url}/capture/session/start", headers=tok, json={"session_id": sid, "channels": [
        {"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
    for f in audio_fragments("mic:default", 0.6):
        httpx.post(f"{server.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack()).raise_for_status()
    assert list((server.data_dir / "media").rglob("*.frag"))
    assert _loose(server.data_dir / "media") == []
