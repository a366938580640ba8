"""One dead webhook receiver no longer blocks its session's queue forever: retries are bounded (here 3 s,
24 h by default), then the message is a dead letter, listed by the API and `vdbnb info`, and replayable (in
order, once the receiver is back). The session's five messages all come out dead, one after the other: the
queue moved on past the first instead of waiting behind it forever."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from testkit.media import audio_fragments
from testkit.webhooks import WebhookReceiver


def _wait(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_dead_letters_listed_counted_and_replayed(server_factory):
    down = {"on": True}
    hooks = WebhookReceiver(fail_pattern=lambda n: down["on"]).start()
    srv = server_factory(env={"VDBNB_WEBHOOK_RETRY_S": "3", "VDBNB_WEBHOOK_MAX_BACKOFF_S": "0.5"})
    srv.args = ["--no-ai"]
    srv.start()
    try:
        h = srv.headers()
        sid = httpx.post(f"{srv.url}/collection/default/capture/session", headers=h,
                         json={"end_user_id": "w", "callback_url": hooks.url}).json()["data"]["session_id"]
        tok = {"x-access-token": httpx.post(f"{srv.url}/capture/session/token", headers=h, json={}).json()[
            "data"]["token"]}
        httpx.post(f"{srv.url}/capture/session/start", headers=tok, json={"session_id": sid, "channels": [
            {"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
        for f in audio_fragments("mic:default", 0.5):
            httpx.post(f"{srv.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack())
        httpx.post(f"{srv.url}/capture/session/{sid}/stop", headers=tok).raise_for_status()
        # created, starting, active, stopping, stopped: all retried for 3 s, then dead letters (not stuck)
        dead = _wait(lambda: (d := httpx.get(f"{srv.url}/webhooks/dead-letters", headers=h).json()["data"])
                     ["count"] >= 5 and d, 60, "five dead letters")
        rows = dead["dead_letters"]
        assert [r["body"]["event"] for r in rows] == ["capture_session.created", "capture_session.starting",
                                                      "capture_session.active", "capture_session.stopping",
                                                      "capture_session.stopped"]
        assert all(r["attempts"] >= 1 and r["last_error"] == "HTTP 500" and r["dead_at"] for r in rows)
        health = httpx.get(f"{srv.url}/health").json()["data"]
        assert health["webhooks_dead"] == 5 and health["webhooks_pending"] == 0
        assert not hooks.events()
        # `vdbnb info` says so (read from the database)
        env = {k: v for k, v in os.environ.items() if k != "VDBNB_URL"}
        out = subprocess.run([sys.executable, "-m", "vdbnb", "--data-dir", str(srv.data_dir), "info"],
                             capture_output=True, text=True, timeout=60, env=env).stdout
        assert "5 dead letters" in out, out
        # a client token cannot see or replay them
        assert httpx.get(f"{srv.url}/webhooks/dead-letters", headers=tok).status_code == 403
        # the receiver is back: replay delivers them, in order
        down["on"] = False
        r = subprocess.run([sys.executable, "-m", "vdbnb", "webhooks", "--replay"], capture_output=True, text=True,
                           timeout=60, env={**env, "VDBNB_URL": srv.url, "VDBNB_API_KEY": srv.api_key})
        assert r.returncode == 0 and "5 dead-letter webhook(s) queued again" in r.stdout, (r.stdout, r.stderr)
        evs = hooks.wait_for(lambda e: len(e) >= 5, 30)
        assert [e["event"] for e in evs] == [x["body"]["event"] for x in rows]
        assert httpx.get(f"{srv.url}/webhooks/dead-letters", headers=h).json()["data"]["count"] == 0
    finally:
        srv.stop()
        hooks.stop()

