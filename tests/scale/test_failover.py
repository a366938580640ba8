"""Failover: two api replicas + one worker on a real PostgreSQL and a real S3 store (SeaweedFS).

A capture streams to replica A through the recorder's own uplink (given both replicas), a websocket subscriber
sits on replica B, a webhook receiver listens. A is SIGKILLed mid-capture (the uplink moves to B and resends
what A had not acknowledged; the webhook dispatcher role moves to B), then the worker is SIGKILLed and a new
one started (the stream's lease expires and moves to it). Then every fragment seq is contiguous and every
object is in the bucket with the right size and hash, each event is stored once and was seen on B, every
webhook arrived in order with a valid signature, and no lease is held by a dead process."""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time

import httpx
import numpy as np
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from testkit.media import pcm_fragments
from testkit.speech import espeak_wav, read_wav
from testkit.webhooks import WebhookReceiver
from testkit.wait import wait_until

pytestmark = pytest.mark.slow
LEASE_S = 3.0
SENTENCES = ["The quarterly budget review moves to Thursday afternoon.",
             "Please send the signed contract to the legal team before Friday.",
             "Our new office in Lisbon opens next spring with forty desks.",
             "The database migration finished without any errors last night."]


def speech_pcm48(tmp_path) -> np.ndarray:
    parts = []
    for i, s in enumerate(SENTENCES):
        x, sr = read_wav(espeak_wav(s, tmp_path / f"s{i}.wav", rate=48000))
        assert sr == 48000
        parts += [np.zeros(int(0.6 * sr), np.float32), 0.5 * x, np.zeros(int(1.4 * sr), np.float32)]
    return np.concatenate(parts).astype(np.float32)


class Subscriber(threading.Thread):
    """A websocket client on one replica, keeping every message."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.messages, self.ready, self._halt = url, [], threading.Event(), threading.Event()

    def run(self):
        from websockets.sync.client import connect
        with connect(self.url) as ws:
            ws.recv(5)  # connected
            self.ready.set()
            while not self._halt.is_set():
                try:
                    self.messages.append(json.loads(ws.recv(0.5)))
                except TimeoutError:
                    continue

    def stop(self):
        self._halt.set()
        self.join(5)

    def event_ids(self) -> set[str]:
        return {m.get("event_id") or (m.get("data") or {}).get("event_id") for m in self.messages}


def db(url):
    return psycopg.connect(url, autocommit=True)


def test_replica_and_worker_die_mid_capture(cluster, tmp_path):
    from vdbnb.recorder.uplink import Uplink

    env = {"VDBNB_RECORDER_GRACE_S": "8", "VDBNB_LEASE_S": str(LEASE_S), "VDBNB_ACCURATE_PASS": "0"}
    a = cluster.replica("a", env=env)
    wait_until(lambda: httpx.get(a.url + "/health").json()["data"]["webhook_dispatcher"], 20)
    b = cluster.replica("b", env=env)
    worker = cluster.worker("w1", env=env)
    assert httpx.get(b.url + "/health").json()["data"]["webhook_dispatcher"] is False  # A dispatches
    w1_id = worker.health()["backends"]["process_id"]
    a_id = httpx.get(a.url + "/health").json()["data"]["backends"]["process_id"]
    hooks = WebhookReceiver(fail_pattern=lambda n: n <= 3).start()  # a slow start: webhooks pend on A
    sub = None
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def run(coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
    up = None
    try:
        h = a.headers()
        sid = httpx.post(f"{b.url}/collection/default/capture/session", headers=h,
                         json={"end_user_id": "failover", "callback_url": hooks.url}).json()["data"]["session_id"]
        token = httpx.post(f"{b.url}/capture/session/token", headers=h, json={}).json()["data"]["token"]
        ws_url = httpx.get(f"{b.url}/collection/default/websocket", headers=h).json()["data"]["websocket_url"]
        sub = Subscriber(ws_url + "&all=1")
        sub.start()
        assert sub.ready.wait(10)

        # the recorder's uplink, given both replicas: it starts on A
        async def open_uplink():
            u = Uplink([a.url, b.url], token, sid, tmp_path / "spool")
            await u.start([{"channel_id": "mic:default", "type": "audio", "name": "Mic", "store": True}])
            u.run()
            return u
        up = run(open_uplink())
        assert up.api_url == a.url
        rid = up.streams["mic:default"]
        r = httpx.post(f"{b.url}/rtstream/{rid}/transcription", headers=h, json={"action": "start"})
        assert r.status_code == 200, r.text

        frags = pcm_fragments("mic:default", speech_pcm48(tmp_path), time.time())
        sent = {f.seq: f.pack() for f in frags}
        third = len(frags) // 3
        for i, f in enumerate(frags):
            up.submit_threadsafe(loop, f)
            time.sleep(0.25)  # twice real time
            if i == third:
                a.kill()                        # replica A dies mid-capture
            if i == 2 * third:
                assert wait_until(lambda: _finals(cluster, rid), 60), "no transcript before the worker died"
                worker.kill()                   # and then the worker
        assert wait_until(lambda: not any(up.pending.values()), 60), up.unacked()
        assert up.api_url == b.url and up.stats.get("failovers", 0) >= 1

        with db(cluster.backend.database_url) as c:  # the dead worker's lease runs out, nothing renews it
            assert wait_until(lambda: not c.execute(
                "SELECT 1 FROM stream_leases WHERE holder=%s AND expires_at > extract(epoch from now())",
                (w1_id,)).fetchone(), LEASE_S + 5)
        worker2 = cluster.worker("w2", env=env)
        w2_id = worker2.health()["backends"]["process_id"]
        run(up.stop())

        # the new worker takes the stream over and finishes it
        def caught_up():
            with db(cluster.backend.database_url) as c:
                cur = c.execute("SELECT seq FROM pipeline_cursors WHERE rtstream_id=%s AND pipeline='transcript'",
                                (rid,)).fetchone()
                return cur and cur[0] == len(frags) - 1
        assert wait_until(caught_up, 120), worker2.health()
        with db(cluster.backend.database_url) as c:
            holders = {r[0] for r in c.execute("SELECT holder FROM stream_leases WHERE expires_at > "
                                               "extract(epoch from now())").fetchall()}
            assert holders <= {w2_id}, holders  # no live lease of a dead process
            links = {r[0] for r in c.execute("SELECT replica FROM ingest_links WHERE session_id=%s AND "
                                             "heartbeat_at > extract(epoch from now()) - 3", (sid,)).fetchall()}
            assert a_id not in links and links  # the dead replica's link went stale; the uplink's is on B

            # every fragment: contiguous seqs, each object in S3 with the size and hash that was sent
            rows = c.execute("SELECT seq, size, path FROM fragments WHERE rtstream_id=%s ORDER BY seq",
                             (rid,)).fetchall()
            assert [r[0] for r in rows] == list(range(len(frags)))
            objs = cluster.backend.s3.objects(cluster.backend.media_url, f"media/{sid}/")
            assert len(objs) == len(frags)
            for seq, size, path in rows:
                body = objs[f"media/{path}"]
                assert len(body) == size == len(sent[seq])
                assert hashlib.sha256(body).hexdigest() == hashlib.sha256(sent[seq]).hexdigest()

            # each event stored once: lifecycle moves once each, no two finals of one utterance
            evs = c.execute("SELECT id, channel, event, is_final, start, \"end\", text, data FROM events WHERE "
                            "session_id=%s ORDER BY emitted_at, rowid_seq", (sid,)).fetchall()
        life = [e[2] for e in evs if e[1] == "capture_session"]
        assert life == ["capture_session.created", "capture_session.starting", "capture_session.active",
                        "capture_session.stopping", "capture_session.stopped"], life
        stopped = next(e for e in evs if e[2] == "capture_session.stopped")
        assert "recorder_lost" not in json.dumps(stopped[7])  # B knew the recorder had moved to it
        finals = sorted((e for e in evs if e[1] == "transcript" and e[3] == 1), key=lambda e: e[4])
        assert len(finals) >= 3, [e[6] for e in finals]
        for x, y in zip(finals, finals[1:]):
            assert y[4] >= x[5] - 0.05, f"two finals overlap (stored twice?): {x[6]!r} / {y[6]!r}"
        said = " ".join(e[6] for e in finals).lower()
        assert "budget" in said and ("lisbon" in said or "database" in said), said

        # seen on B, live: every lifecycle event and final transcript stored after the subscriber connected
        live = {e[0] for e in evs if (e[1] == "capture_session" and e[2] != "capture_session.created")
                or (e[1] == "transcript" and e[3] == 1)}
        assert wait_until(lambda: live <= sub.event_ids(), 10), f"never pushed on B: {live - sub.event_ids()}"

        # every webhook delivered, in order, signature valid (at least once: a retry may repeat one)
        want = life
        got = hooks.wait_for(lambda e: [x["event"] for x in e if x.get("event")][-1:] == [want[-1]], 60)
        firsts = list(dict.fromkeys(x["event"] for x in got))
        assert firsts == want, firsts
        wh = Webhook(cluster.backend.webhook_secret(None))
        for rec in hooks.received:
            wh.verify(rec["body"], rec["headers"])
        # the dispatcher role moved off the dead processes: exactly one live process holds it
        roles = [httpx.get(b.url + "/health").json()["data"]["webhook_dispatcher"],
                 worker2.health()["webhook_dispatcher"]]
        assert roles.count(True) == 1, roles
    finally:
        if up is not None:
            run(up.close())
        loop.call_soon_threadsafe(loop.stop)
        if sub is not None:
            sub.stop()
        hooks.stop()


def _finals(cluster, rid: str) -> bool:
    with db(cluster.backend.database_url) as c:
        return bool(c.execute("SELECT 1 FROM events WHERE rtstream_id=%s AND channel='transcript' AND is_final=1",
                              (rid,)).fetchone())
