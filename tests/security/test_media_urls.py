"""Signed media URLs: a key of their own (not derivable from the webhook secret every receiver holds), a short
default lifetime, rotation that invalidates every URL signed before."""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
import subprocess
import sys
import time

import httpx

from testkit.media import audio_fragments


def _stream(server) -> tuple[str, str]:
    """A session with one audio stream; returns (rtstream id, player URL from generate_stream)."""
    h = server.headers()
    sid = httpx.post(f"{server.url}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "u"}).json()["data"]["session_id"]
    tok = {"x-access-token": httpx.post(f"{server.url}/capture/session/token", headers=h, json={}).json()["data"][
        "token"]}
    httpx.post(f"{server.url}/capture/session/start", headers=tok, json={"session_id": sid, "channels": [
        {"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
    t0 = time.time() - 5
    for f in audio_fragments("mic:default", 1.0, t0=t0):
        httpx.post(f"{server.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack()).raise_for_status()
    rid = httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=h).json()["data"][
        "rtstreams"][0]["id"]
    d = httpx.get(f"{server.url}/rtstream/{rid}/stream", headers=h, params={"start": t0, "end": t0 + 1}).json()["data"]
    return rid, d["player_url"]


def _exp(url: str) -> int:
    return int(url.split("exp=")[1].split("&")[0])


def test_webhook_secret_cannot_mint_media_urls(server):
    rid, player = _stream(server)
    assert httpx.get(player).status_code == 200
    # what a webhook receiver holds: the webhook secret. The old key was sha256("url-signing:" + it)
    secret = (server.data_dir / "webhook_secret").read_text().strip()
    old_key = hashlib.sha256(("url-signing:" + secret).encode()).digest()
    q = player.split("?", 1)[1].split("&exp=")[0]
    path = f"/player/rtstream/{rid}?{q}"
    exp = int(time.time() + 30 * 86400)
    sig = hmac.new(old_key, f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()[:32]
    r = httpx.get(f"{server.url}{path}&exp={exp}&sig={sig}")
    assert r.status_code == 401 and r.json()["error_code"] == "INVALID_SIGNATURE"
    # the key is its own random file, private
    key_file = server.data_dir / "media_url_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert secret not in key_file.read_text()


def test_default_lifetime_is_one_hour(server):
    _, player = _stream(server)
    assert abs(_exp(player) - (time.time() + 3600)) < 60


def test_lifetime_is_configurable_and_expired_urls_are_refused(server_factory):
    srv = server_factory(env={"VDBNB_MEDIA_URL_TTL_S": "2"}).start()
    _, player = _stream(srv)
    assert abs(_exp(player) - (time.time() + 2)) < 2
    assert httpx.get(player).status_code == 200
    deadline = time.time() + 10
    while time.time() < deadline and httpx.get(player).status_code == 200:
        time.sleep(0.5)
    assert httpx.get(player).status_code == 401


def test_rotation_invalidates_old_urls_api_and_cli(server):
    _, player = _stream(server)
    assert httpx.get(player).status_code == 200
    r = httpx.post(f"{server.url}/security/media-key/rotate", headers=server.headers())
    assert r.status_code == 200 and r.json()["data"]["rotated"] is True
    assert httpx.get(player).status_code == 401
    _, player2 = _stream(server)
    assert httpx.get(player2).status_code == 200
    # the CLI writes a new key file; the running server reads it on the next check
    out = subprocess.run([sys.executable, "-m", "vdbnb", "--data-dir", str(server.data_dir), "rotate-media-key"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert httpx.get(player2).status_code == 401
    _, player3 = _stream(server)
    assert httpx.get(player3).status_code == 200
    # a client token cannot rotate
    tok = httpx.post(f"{server.url}/capture/session/token", headers=server.headers(), json={}).json()["data"]["token"]
    assert httpx.post(f"{server.url}/security/media-key/rotate", headers={"x-access-token": tok}).status_code == 403
