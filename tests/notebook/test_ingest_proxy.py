"""The browser recorder's route to the vdbnb server through a real Jupyter server (vdbnb's server extension):
R1-R3, fragments and the ingest websocket pass with a Jupyter login + a client token; nothing passes without
the Jupyter login, and nothing but the recorder calls is reachable through it. Also: the server's CORS answer
for the recorder calls a page makes directly (and none for API-key routes)."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from testkit.lab import Lab
from testkit.media import audio_fragments

websockets = pytest.importorskip("websockets")


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path / "lab").start()
    yield lab
    lab.stop()


def backend(server):
    import vdbnb
    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    return conn, conn.create_capture_session(end_user_id="proxy"), conn.generate_client_token(600)


def test_recorder_calls_through_the_jupyter_proxy(server, lab):
    conn, cap, token = backend(server)
    base = f"{lab.base}/vdbnb/ingest/{server.port}/capture/session"
    jupyter = {"Authorization": f"token {lab.token}"}
    start = {"session_id": cap.id, "channels": [{"channel_id": "mic:default", "type": "audio", "name": "Mic",
                                                   "store": True}]}
    # no Jupyter login: refused before anything reaches the vdbnb server
    r = httpx.post(f"{base}/start", json=start, headers={"x-access-token": token})
    assert r.status_code == 403
    # Jupyter login, no client token: the vdbnb server refuses
    r = httpx.post(f"{base}/start", json=start, headers=jupyter)
    assert r.status_code == 401, r.text
    # both: R1 works, and the API key was never needed by the caller
    r = httpx.post(f"{base}/start", json=start, headers={**jupyter, "x-access-token": token})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["channels"][0]["channel_id"] == "mic:default"
    # only the recorder routes are reachable through the proxy
    for path in (f"{lab.base}/vdbnb/ingest/{server.port}/collection/default/capture/session",
                 f"{base}/token"):
        assert httpx.get(path, headers={**jupyter, "x-access-token": server.api_key}).status_code == 404, path
    # a fragment over HTTP, then more over the proxied websocket: acked after they are stored
    frags = audio_fragments("mic:default", seconds=1.0)
    r = httpx.post(f"{base}/{cap.id}/fragment", content=frags[0].pack(),
                   headers={**jupyter, "x-access-token": token, "content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["data"]["seq"] == 0, r.text

    async def ws_rest():
        url = (f"ws://127.0.0.1:{lab.port}/vdbnb/ingest/{server.port}/capture/session/{cap.id}/ingest"
               f"?token={lab.token}&access_token={token}")
        async with websockets.connect(url, max_size=None) as ws:
            hello = json.loads(await ws.recv())
            acks = []
            for f in frags[1:]:
                await ws.send(f.pack())
                acks.append(json.loads(await ws.recv()))
            return hello, acks
    hello, acks = asyncio.run(ws_rest())
    assert hello["type"] == "hello" and hello["acked"] == {"mic:default": 0}
    assert [a["type"] for a in acks] == ["ack"] * (len(frags) - 1)
    assert [a["seq"] for a in acks] == list(range(1, len(frags)))
    # the websocket without a Jupyter login is refused
    async def ws_anonymous():
        url = (f"ws://127.0.0.1:{lab.port}/vdbnb/ingest/{server.port}/capture/session/{cap.id}/ingest"
               f"?access_token={token}")
        async with websockets.connect(url):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        asyncio.run(ws_anonymous())
    assert e.value.response.status_code == 403
    # R2 and R3 through the proxy; the server has every fragment
    r = httpx.get(f"{base}/{cap.id}", headers={**jupyter, "x-access-token": token})
    assert r.json()["data"]["acked"] == {"mic:default": len(frags) - 1}
    r = httpx.post(f"{base}/{cap.id}/stop", headers={**jupyter, "x-access-token": token})
    assert r.status_code == 200 and r.json()["data"]["status"] == "stopped", r.text


def test_cors_only_on_the_recorder_calls(server):
    _, cap, token = backend(server)
    pre = {"Origin": "http://127.0.0.1:8888", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "x-access-token, content-type",
           "Access-Control-Request-Private-Network": "true"}
    r = httpx.options(f"{server.url}/capture/session/start", headers=pre)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "x-access-token" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-allow-private-network"] == "true"
    assert "access-control-allow-credentials" not in r.headers
    r = httpx.get(f"{server.url}/capture/session/{cap.id}", headers={"x-access-token": token,
                                                                     "Origin": "http://127.0.0.1:8888"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    # API-key routes: no CORS, so a page cannot read them even holding a key
    for path in ("/capture/session/token", "/collection/default/capture/session"):
        r = httpx.options(server.url + path, headers=pre)
        assert "access-control-allow-origin" not in r.headers, path
