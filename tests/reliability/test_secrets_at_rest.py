"""Secrets at rest and exposure, beyond tests/server/test_auth.py (which checks: key and webhook-secret files
0600, no clear key/token in the database or the log, --host 0.0.0.0 refused) and
tests/reliability/test_auth_matrix.py (every route x every principal):

* the database holds the SHA-256 of the API key, of each client token and of each websocket ticket, and no
  clear value of any of them (ticket included);
* the key file is 0600 even under umask 000 and even if it was left 0644 by someone;
* `vdbnb serve` with no --host listens on 127.0.0.1 only (checked in /proc/net/tcp and by connecting through
  another local address); VDBNB_HOST=0.0.0.0 is refused like --host 0.0.0.0;
* a new data dir is private (0700): the database holds transcripts, OCR text and window titles."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from testkit.server import free_port

from testkit.stored import new_session


def sha(x: str) -> str:
    return hashlib.sha256(x.encode()).hexdigest()


def spawn(data_dir: Path, port: int, env: dict | None = None, umask: int | None = None) -> subprocess.Popen:
    e = {k: v for k, v in os.environ.items() if k not in ("VDBNB_HOST", "VDBNB_PORT", "VDBNB_API_KEY")}
    e.update(env or {})
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.Popen([sys.executable, "-m", "vdbnb", "serve", "--no-ai", "--port", str(port),
                             "--data-dir", str(data_dir)], env=e, preexec_fn=pre,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_health(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("no /health")


def listening(port: int) -> list[str]:
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(f).read_text().splitlines()[1:]:
            parts = line.split()
            addr, p = parts[1].rsplit(":", 1)
            if int(p, 16) == port and parts[3] == "0A":
                out.append(addr)
    return out


def other_local_address() -> str | None:
    """A non-loopback address of this machine, to prove the server is not reachable through it."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))      # no packet is sent for UDP connect
            ip = s.getsockname()[0]
            return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_defaults_hashes_and_modes(tmp_path):
    d = tmp_path / "fresh" / "data"
    (tmp_path / "fresh").mkdir()
    port = free_port()
    proc = spawn(d, port, umask=0)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_health(url, proc)
        # 127.0.0.1 by default, and only there
        assert listening(port) == ["0100007F"], listening(port)
        ip = other_local_address()
        if ip:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((ip, port)) != 0, f"reachable on {ip}"
        assert json.loads((d / "server.json").read_text())["host"] == "127.0.0.1"
        # files: key and webhook secret 0600 even under umask 000; the data dir private
        for f in ("api_key", "webhook_secret"):
            assert stat.S_IMODE(os.stat(d / f).st_mode) == 0o600, f
        assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0, oct(os.stat(d).st_mode)
        key = (d / "api_key").read_text().strip()

        class S:
            pass
        srv = S()
        srv.url, srv.headers = url, (lambda token=None: {"x-access-token": token or key})
        sid, token = new_session(srv)
        ws = httpx.get(f"{url}/collection/default/websocket", headers={"x-access-token": key}).json()["data"]
        ticket = ws["websocket_url"].split("ticket=")[1]
        time.sleep(0.5)
        blob = b"".join(p.read_bytes() for p in d.glob("vdbnb.sqlite3*"))
        for name, secret in (("API key", key), ("client token", token), ("websocket ticket", ticket)):
            assert secret.encode() not in blob, f"{name} stored in clear"
            assert sha(secret).encode() in blob, f"{name} not stored as its SHA-256"
        # media written by the server are 0600
        frag = __import__("testkit.media", fromlist=["x"]).audio_fragments("mic:default", 0.3)[0]
        httpx.post(f"{url}/capture/session/start", headers={"x-access-token": token}, json={
            "session_id": sid, "channels": [{"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
        httpx.post(f"{url}/capture/session/{sid}/fragment", headers={"x-access-token": token},
                   content=frag.pack()).raise_for_status()
        media = list((d / "media").rglob("*.frag"))
        assert media and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in media)
    finally:
        proc.terminate()
        proc.wait(15)
    # a key file someone left 0644 is put back to 0600 on the next start
    os.chmod(d / "api_key", 0o644)
    proc = spawn(d, port)
    try:
        wait_health(f"http://127.0.0.1:{port}", proc)
        assert stat.S_IMODE(os.stat(d / "api_key").st_mode) == 0o600
    finally:
        proc.terminate()
        proc.wait(15)


def test_remote_bind_refused_from_env(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vdbnb", "serve", "--no-ai", "--data-dir", str(tmp_path / "d")],
                       env={**os.environ, "VDBNB_HOST": "0.0.0.0"}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "refusing to bind 0.0.0.0" in r.stderr
