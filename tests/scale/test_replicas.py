"""Two api replicas on one PostgreSQL + S3: the unmodified official videodb==0.5.1 SDK runs the backend flow
against replica B while the session is driven (R1, media, stop) through replica A; a worker does the AI and
the export, whose progress a poll on either replica sees."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from testkit.media import audio_fragments, video_fragments
from testkit.webhooks import WebhookReceiver
from testkit.wait import wait_until

videodb = pytest.importorskip("videodb")
pytestmark = pytest.mark.slow


def test_official_sdk_on_one_replica_session_through_another(cluster):
    a = cluster.replica("a")
    b = cluster.replica("b")
    worker = cluster.worker("w")
    hooks = WebhookReceiver().start()
    loop = asyncio.new_event_loop()
    try:
        conn = videodb.connect(api_key=b.api_key, base_url=b.url)  # the backend talks to B only
        ws = conn.connect_websocket()

        async def open_ws():
            await ws.connect()
            return ws.connection_id
        conn_id = loop.run_until_complete(open_ws())
        cap = conn.create_capture_session(end_user_id="user-7", callback_url=hooks.url,
                                          metadata={"replicas": 2}, ws_connection_id=conn_id)
        token = conn.generate_client_token(expires_in=600)

        # the recorder's calls go to A
        h = {"x-access-token": token}
        chans = [{"channel_id": "mic:default", "type": "audio", "name": "Mic", "store": True},
                 {"channel_id": "display:1", "type": "video", "name": "Display 1", "store": True,
                  "is_primary": True}]
        r = httpx.post(f"{a.url}/capture/session/start", json={"session_id": cap.id, "channels": chans}, headers=h)
        assert r.status_code == 200, r.text
        t0 = time.time()
        for frag in audio_fragments("mic:default", 2.0, t0=t0) + video_fragments("display:1", 2.0, t0=t0):
            r = httpx.post(f"{a.url}/capture/session/{cap.id}/fragment", content=frag.pack(), headers=h)
            assert r.status_code == 200, r.text

        # B sees what A stored, through the shared store
        cap = conn.get_capture_session(cap.id)
        assert cap.status == "active" and cap.metadata == {"replicas": 2}
        assert [d.id for d in cap.displays] == ["display:1"]
        mic = cap.get_rtstream("mic")[0]
        assert cap.id in [s.id for s in conn.list_capture_sessions(status="active")]

        # the lifecycle A emitted reaches the SDK's websocket on B (LISTEN/NOTIFY)
        async def read_ws(n):
            out = []
            async for m in ws.receive():
                if m.get("channel") == "capture_session":
                    out.append(m["event"])
                if len(out) >= n:
                    return out
        seen = loop.run_until_complete(asyncio.wait_for(read_ws(3), 20))
        assert seen == ["capture_session.created", "capture_session.starting", "capture_session.active"]

        r = httpx.post(f"{a.url}/capture/session/{cap.id}/stop", headers=h)  # R3 on A
        assert r.status_code == 200
        assert wait_until(lambda: conn.get_capture_session(cap.id).status == "stopped", 10)

        # export through B, polled on A and B: the worker (not a replica) muxes it, its progress is in the store;
        # the MP4 is written back to the bucket and served by a presigned URL (Range works)
        deadline = time.time() + 120
        polls = []
        while True:
            res = conn.get_capture_session(cap.id).export()
            polls.append(res)
            on_a = httpx.post(f"{a.url}/collection/default/capture/session/{cap.id}/export", headers=a.headers(),
                              json={}).json()["data"]
            polls.append(on_a)
            if res.get("export_status") == "exported" or time.time() > deadline:
                break
            time.sleep(0.5)
        assert res["export_status"] == "exported", res
        assert all(p["export_status"] in ("exporting", "exported") for p in polls), polls
        assert all(0.0 <= p["progress"] <= 1.0 for p in polls), polls
        assert on_a["export_status"] == "exported" and on_a["video_id"] == res["video_id"]  # A sees B's export
        assert worker.health()["exports"]["done"] >= 1
        for rep in (a, b):  # the replicas queued it, they did not run it
            assert httpx.get(rep.url + "/health").json()["data"]["exports"] == {
                "running": False, "current": None, "done": 0, "failed": 0, "lost": 0}
        r = httpx.get(res["stream_url"], follow_redirects=True)
        assert r.status_code == 200 and r.content[4:8] == b"ftyp"
        assert r.history and r.history[0].status_code == 307  # served by the bucket, not by a replica
        part = httpx.get(res["stream_url"], headers={"range": "bytes=0-99"}, follow_redirects=True)
        assert part.status_code == 206 and part.content == r.content[:100]
        key = r.url.path.split("/", 2)[2]  # /bucket/prefix/exports/... → the object is in the bucket
        assert "exports/" in key
        assert mic.id  # the SDK's RTStream objects came from B

        # every lifecycle webhook, once, in order, signed with the secret every replica shares
        evs = hooks.wait_for(lambda e: any(x["event"] == "capture_session.exported" for x in e), 30)
        assert [x["event"] for x in evs] == ["capture_session.created", "capture_session.starting",
                                             "capture_session.active", "capture_session.stopping",
                                             "capture_session.stopped", "capture_session.exported"]
        wh = Webhook(cluster.backend.webhook_secret(None))
        for rec in hooks.received:
            wh.verify(rec["body"], rec["headers"])
    finally:
        try:
            loop.run_until_complete(ws.close())
        except Exception:
            pass
        loop.close()
        hooks.stop()
