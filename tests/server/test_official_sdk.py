"""The unmodified official videodb==0.5.1 SDK runs VideoDB's capture backend flow against `vdbnb serve`."""
from __future__ import annotations

import asyncio
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from testkit.media import audio_fragments, video_fragments
from testkit.webhooks import WebhookReceiver

videodb = pytest.importorskip("videodb")


def webhook_secret(server) -> str:
    return server.webhook_secret


def test_official_sdk_backend_flow(server):
    hooks = WebhookReceiver().start()
    try:
        conn = videodb.connect(api_key=server.api_key, base_url=server.url)
        # websocket first, as the Node quickstart does
        ws = conn.connect_websocket()

        async def open_ws():
            await ws.connect()
            return ws.connection_id
        loop = asyncio.new_event_loop()
        conn_id = loop.run_until_complete(open_ws())
        assert conn_id and conn_id.startswith("ws-")

        cap = conn.create_capture_session(end_user_id="user-42", callback_url=hooks.url,
                                          metadata={"app": "quickstart", "n": 3}, ws_connection_id=conn_id)
        assert cap.id.startswith("cap-") and cap.status == "created"
        token = conn.generate_client_token(expires_in=600)
        assert token.startswith("st-")
        got = conn.get_capture_session(cap.id)
        assert got.end_user_id == "user-42" and got.metadata == {"app": "quickstart", "n": 3}
        assert cap.id in [s.id for s in conn.list_capture_sessions()]
        assert cap.id in [s.id for s in conn.list_capture_sessions(status="created")]
        assert cap.id not in [s.id for s in conn.list_capture_sessions(status="active")]

        # the client path, as the recorder does it: R1 with the client token, then media
        h = {"x-access-token": token}
        chans = [{"channel_id": "mic:default", "type": "audio", "name": "Mic", "store": True},
                 {"channel_id": "system_audio:default", "type": "audio", "name": "System", "store": True},
                 {"channel_id": "display:1", "type": "video", "name": "Display 1", "store": True,
                  "is_primary": True},
                 {"channel_id": "display:2", "type": "video", "name": "Display 2", "store": True}]
        r = httpx.post(f"{server.url}/capture/session/start", json={"session_id": cap.id, "channels": chans},
                       headers=h)
        assert r.status_code == 200, r.text
        start = r.json()["data"]
        assert start["status"] == "starting" and len(start["channels"]) == 4
        assert start["ingest_url"].startswith("ws://127.0.0.1")
        for frag in audio_fragments("mic:default", 0.6):
            r = httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", content=frag.pack(), headers=h)
            assert r.status_code == 200, r.text
        assert httpx.get(f"{server.url}/capture/session/{cap.id}", headers=h).json()["data"]["status"] == "active"

        cap = conn.get_capture_session(cap.id)
        assert cap.status == "active"
        mics = cap.get_rtstream("mic")
        assert len(mics) == 1 and mics[0].id.startswith("rts-")
        assert len(cap.get_rtstream("screen")) == 2 and len(cap.get_rtstream("system_audio")) == 1
        assert [d.id for d in cap.displays] == ["display:1", "display:2"]
        assert [d.is_primary for d in cap.displays] == [True, False]

        evs = hooks.wait_for(lambda e: any(x["event"] == "capture_session.active" for x in e))
        active = next(x for x in evs if x["event"] == "capture_session.active")
        assert active["capture_session_id"] == cap.id and active["status"] == "active"
        assert {s["channel_id"] for s in active["data"]["rtstreams"]} == {"mic", "screen", "system_audio"}
        wh = Webhook(webhook_secret(server))
        for rec in hooks.received:
            wh.verify(rec["body"], rec["headers"])  # raises if the signature does not verify
        assert [x["event"] for x in evs][:3] == ["capture_session.created", "capture_session.starting",
                                                 "capture_session.active"]

        # the same lifecycle arrives on the websocket connection given at create time
        async def read_ws(n):
            out = []
            async for m in ws.receive():
                if m.get("channel") == "capture_session":
                    out.append(m["event"])
                if len(out) >= n:
                    return out
        seen = loop.run_until_complete(asyncio.wait_for(read_ws(3), 10))
        assert seen == ["capture_session.created", "capture_session.starting", "capture_session.active"]
        loop.run_until_complete(ws.close())
        loop.close()

        # stop with the client token, as R3
        r = httpx.post(f"{server.url}/capture/session/{cap.id}/stop", headers=h)
        assert r.status_code == 200
        hooks.wait_for(lambda e: any(x["event"] == "capture_session.stopped" for x in e))
        assert conn.get_capture_session(cap.id).status == "stopped"
    finally:
        hooks.stop()


def test_official_sdk_rtstream_calls(server):
    """The rtstream surface the SDK calls exists and answers in its shapes (AI content is tested elsewhere)."""
    conn = videodb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="u")
    token = conn.generate_client_token(expires_in=600)
    h = {"x-access-token": token}
    httpx.post(f"{server.url}/capture/session/start", headers=h, json={"session_id": cap.id, "channels": [
        {"channel_id": "display:1", "type": "video", "name": "d1", "store": True}]}).raise_for_status()
    for frag in video_fragments("display:1", 2.0):
        httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", content=frag.pack(),
                   headers=h).raise_for_status()
    cap = conn.get_capture_session(cap.id)
    screen = cap.get_rtstream("screen")[0]
    event_id = conn.create_event(event_prompt="a password is shown", label="password")
    assert any(e["event_id"] == event_id for e in conn.list_events())
    coll = conn.get_collection()
    assert coll.id == "default"
    assert coll.get_rtstream(screen.id).id == screen.id
    screen.stop()
    assert coll.get_rtstream(screen.id).status == "stopped"
    url = screen.generate_stream(int(cap.rtstreams[0].created_at), int(cap.rtstreams[0].created_at) + 2)
    assert url.startswith(server.url)
    # a player follows the media URL (with S3 media: a redirect to a presigned URL the bucket serves itself)
    r = httpx.get(screen.stream_url, follow_redirects=True)
    assert r.status_code == 200, (r.url, r.headers, [(h.status_code, h.headers) for h in r.history], r.text[:300])
    assert r.headers["content-type"] == "video/mp4" and len(r.content) > 1000
    r = httpx.get(screen.stream_url, headers={"range": "bytes=0-99"}, follow_redirects=True)
    assert r.status_code == 206 and len(r.content) == 100
    tampered = screen.stream_url.replace("sig=", "sig=0")
    assert httpx.get(tampered).status_code == 401
    exp = screen.export()  # a stopped stream exports to a playable asset
    assert exp.video_id.startswith("m-") and abs(exp.duration - 2.0) < 0.6
    r = httpx.get(exp.stream_url, follow_redirects=True)
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
