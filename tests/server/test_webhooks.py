"""Webhooks are durable: receiver down, server SIGKILLed and restarted meanwhile → every event arrives,
in order per session, each signature verifies."""
from __future__ import annotations

import time

import httpx
from standardwebhooks.webhooks import Webhook

from testkit.server import free_port
from testkit.media import audio_fragments
from testkit.webhooks import WebhookReceiver

LIFECYCLE = ["capture_session.created", "capture_session.starting", "capture_session.active",
             "capture_session.stopping", "capture_session.stopped"]


def run_session(url: str, key: str, callback: str) -> str:
    h = {"x-access-token": key}
    sid = httpx.post(f"{url}/collection/default/capture/session", headers=h,
                     json={"end_user_id": "u", "callback_url": callback}).json()["data"]["session_id"]
    tok = httpx.post(f"{url}/capture/session/token", headers=h, json={"expires_in": 600}).json()["data"]["token"]
    ch = {"x-access-token": tok}
    httpx.post(f"{url}/capture/session/start", headers=ch, json={"session_id": sid, "channels": [
        {"channel_id": "mic:default", "type": "audio", "name": "m"}]}).raise_for_status()
    for f in audio_fragments("mic:default", 0.3):
        httpx.post(f"{url}/capture/session/{sid}/fragment", headers=ch, content=f.pack()).raise_for_status()
    httpx.post(f"{url}/capture/session/{sid}/stop", headers=ch).raise_for_status()
    return sid


def test_webhooks_survive_receiver_outage_and_server_sigkill(server):
    port = free_port()
    callback = f"http://127.0.0.1:{port}/hook"
    t_down = time.time()
    sids = [run_session(server.url, server.api_key, callback) for _ in range(3)]
    time.sleep(1.0)  # the worker has tried and failed at least once
    pending = httpx.get(server.url + "/health").json()["data"]["webhooks_pending"]
    assert pending == 15
    server.kill()                      # SIGKILL while 15 deliveries are pending
    time.sleep(1.0)
    server.start()                     # same data dir, same port
    time.sleep(max(0.0, 10 - (time.time() - t_down)))   # receiver down for 10 s in all
    hooks = WebhookReceiver(port=port).start()
    try:
        evs = hooks.wait_for(lambda e: len({(x["capture_session_id"], x["event"]) for x in e}) >= 15, timeout=30)
        for sid in sids:
            got = [x["event"] for x in evs if x["capture_session_id"] == sid]
            # at least once: a duplicate may only repeat the previous message, never reorder
            dedup = [e for i, e in enumerate(got) if i == 0 or e != got[i - 1]]
            assert dedup == LIFECYCLE, (sid, got)
        secret = server.webhook_secret
        wh = Webhook(secret)
        ids = set()
        for rec in hooks.received:
            wh.verify(rec["body"], rec["headers"])
            ids.add(rec["headers"]["webhook-id"])
        assert len(ids) == 15
        deadline = time.time() + 5
        while httpx.get(server.url + "/health").json()["data"]["webhooks_pending"] and time.time() < deadline:
            time.sleep(0.1)
        assert httpx.get(server.url + "/health").json()["data"]["webhooks_pending"] == 0
    finally:
        hooks.stop()


def test_wrong_signature_is_rejected_by_verifier(server):
    """The signature is real: a receiver with another secret rejects it."""
    hooks = WebhookReceiver().start()
    try:
        httpx.post(f"{server.url}/collection/default/capture/session", headers=server.headers(),
                   json={"end_user_id": "u", "callback_url": hooks.url}).raise_for_status()
        hooks.wait_for(lambda e: len(e) >= 1)
        rec = hooks.received[0]
        import base64
        import pytest
        from standardwebhooks.webhooks import WebhookVerificationError
        other = Webhook("whsec_" + base64.b64encode(b"x" * 32).decode())
        with pytest.raises(WebhookVerificationError):
            other.verify(rec["body"], rec["headers"])
        tampered = rec["body"].replace("created", "stopped")
        with pytest.raises(WebhookVerificationError):
            Webhook(server.webhook_secret).verify(tampered, rec["headers"])
    finally:
        hooks.stop()
