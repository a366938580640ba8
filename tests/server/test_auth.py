"""Auth: keys and client tokens, scoped and expiring; errors in VideoDB's envelope; never a 5xx."""
from __future__ import annotations

import hashlib
import os
import stat
import time

import httpx

ADMIN_CALLS = [
    ("GET", "/collection/default/capture/session", None),
    ("POST", "/collection/default/capture/session", {"end_user_id": "x"}),
    ("POST", "/capture/session/token", {"expires_in": 60}),
    ("GET", "/collection/default/websocket", None),
    ("GET", "/collection/default", None),
    ("GET", "/rtstream", None),
    ("POST", "/rtstream/event", {"event_prompt": "p", "label": "l"}),
    ("POST", "/rtstream/collection/default/search", {"query": "q"}),
    ("GET", "/collection/default/events", None),
]


def envelope_ok(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["success"] is False and body["message"] and body["error_code"]


def mint(server, collection="default", expires_in=600) -> str:
    h = {**server.headers(), "x-collection-id": collection}
    return httpx.post(f"{server.url}/capture/session/token", headers=h,
                      json={"expires_in": expires_in}).json()["data"]["token"]


def test_auth_matrix(server):
    key = server.api_key
    other = httpx.post(f"{server.url}/collection", headers=server.headers(),
                       json={"name": "other"}).json()["data"]["id"]
    token = mint(server)
    other_token = mint(server, other)
    expired = mint(server, expires_in=1)
    sid = httpx.post(f"{server.url}/collection/default/capture/session", headers=server.headers(),
                     json={"end_user_id": "u"}).json()["data"]["session_id"]
    time.sleep(1.2)
    for method, path, body in ADMIN_CALLS:
        for tok, status in ((None, 401), ("sk-wrong", 401), (token, 403), (expired, 401), (other_token, 403)):
            h = {"x-access-token": tok} if tok else {}
            r = httpx.request(method, server.url + path, headers=h, json=body)
            envelope_ok(r, status)
        r = httpx.request(method, server.url + path, headers={"x-access-token": key}, json=body)
        assert r.status_code == 200, (path, r.text)
    # the recorder calls take a client token of the session's collection only
    start = {"session_id": sid, "channels": [{"channel_id": "mic:default", "type": "audio"}]}
    envelope_ok(httpx.post(f"{server.url}/capture/session/start", json=start,
                           headers={"x-access-token": other_token}), 403)
    envelope_ok(httpx.post(f"{server.url}/capture/session/start", json=start,
                           headers={"x-access-token": expired}), 401)
    assert httpx.post(f"{server.url}/capture/session/start", json=start,
                      headers={"x-access-token": token}).status_code == 200


def test_secrets_at_rest_and_in_logs(server):
    key = server.api_key
    keyfile = server.data_dir / "api_key"
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    if server.backend.shared:  # every replica reads the server secrets from the store, none from its disk
        assert not (server.data_dir / "webhook_secret").exists()
    else:
        assert stat.S_IMODE(os.stat(server.data_dir / "webhook_secret").st_mode) == 0o600
    token = mint(server)
    httpx.get(f"{server.url}/collection/default/websocket", headers=server.headers())
    httpx.get(f"{server.url}/collection/default", headers={"x-access-token": "sk-bogus-key-value"})
    blob = server.backend.database_bytes(server.data_dir)
    assert hashlib.sha256(key.encode()).hexdigest().encode() in blob  # the real store: the key's hash is there
    assert key.encode() not in blob and token.encode() not in blob
    log = server.log.read_text()
    assert key not in log and token not in log and "sk-bogus-key-value" not in log


def test_binds_loopback_only(server):
    import json
    info = json.loads((server.data_dir / "server.json").read_text())
    assert info["host"] == "127.0.0.1"
    from vdbnb.cli import main
    # a non-loopback address is refused unless asked for explicitly
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(server.data_dir)]) == 2
