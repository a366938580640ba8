"""Callback URLs: only http(s) with a host, checked on every route that takes one; a client token (the
recorder's, possibly stolen) cannot set or change the backend's callback."""
from __future__ import annotations

import httpx
import pytest

BAD = ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", "gopher://example.com:70/_x",
       "http://", "https:///path-only", "http://user:pw@example.com/hook", "http://exa mple.com/h",
       "http://example.com:99999/h", "http://example.com/\nX-Injected: 1", "//example.com/h", "example.com/hook"]
GOOD = "https://backend.example.com/hooks/vdbnb"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from testkit.server import ServerProc
    s = ServerProc(tmp_path_factory.mktemp("callbacks"))
    s.args = ["--no-ai"]
    s.start()
    yield s
    s.stop()


def _session(server, **body) -> str:
    r = httpx.post(f"{server.url}/collection/default/capture/session", headers=server.headers(),
                   json={"end_user_id": "u", **body})
    assert r.status_code == 200, r.text
    return r.json()["data"]["session_id"]


def _token(server) -> dict:
    t = httpx.post(f"{server.url}/capture/session/token", headers=server.headers(), json={}).json()["data"]["token"]
    return {"x-access-token": t}


def _refused(r: httpx.Response, status: int = 400) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["success"] is False and body["error_code"] and "callback_url" in body["message"]


@pytest.mark.parametrize("url", BAD)
def test_every_route_refuses_non_http_callbacks(server, url):
    _refused(httpx.post(f"{server.url}/collection/default/capture/session", headers=server.headers(),
                        json={"end_user_id": "u", "callback_url": url}))
    sid = _session(server)
    chans = [{"channel_id": "mic:default", "type": "audio"}]
    for h in (_token(server), server.headers()):  # the recorder's start, with a client token or the API key
        _refused(httpx.post(f"{server.url}/capture/session/start", headers=h,
                            json={"session_id": sid, "channels": chans, "callback_url": url}))
    row = httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=server.headers()).json()["data"]
    assert row["callback_url"] is None and row["status"] == "created"
    # alerts: a stream and an index are needed; the route checks the body before anything else is stored
    r = httpx.post(f"{server.url}/rtstream/rts-none/index/idx-none/alert", headers=server.headers(),
                   json={"event_id": "evt-x", "callback_url": url})
    _refused(r)


def test_client_token_cannot_set_or_change_the_callback(server):
    chans = [{"channel_id": "mic:default", "type": "audio"}]
    sid = _session(server, callback_url=GOOD)
    tok = _token(server)
    r = httpx.post(f"{server.url}/capture/session/start", headers=tok,
                   json={"session_id": sid, "channels": chans, "callback_url": "https://attacker.example.net/x"})
    assert r.status_code == 403 and r.json()["error_code"] == "CALLBACK_NOT_ALLOWED", r.text
    get = lambda s: httpx.get(f"{server.url}/collection/default/capture/session/{s}",  # noqa: E731
                              headers=server.headers()).json()["data"]
    assert get(sid)["callback_url"] == GOOD and get(sid)["status"] == "created"
    # the same URL the backend set is fine (a recorder that passes it along)
    r = httpx.post(f"{server.url}/capture/session/start", headers=tok,
                   json={"session_id": sid, "channels": chans, "callback_url": GOOD})
    assert r.status_code == 200, r.text
    # a session the backend made without a callback does not get one from the client
    sid2 = _session(server)
    r = httpx.post(f"{server.url}/capture/session/start", headers=tok,
                   json={"session_id": sid2, "channels": chans, "callback_url": "https://attacker.example.net/x"})
    assert r.status_code == 403
    assert get(sid2)["callback_url"] is None
