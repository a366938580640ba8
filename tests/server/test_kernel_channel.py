"""The kernel channel on a real server over real sockets: a cell is an ingest fragment of kind ``cell`` on
``kernel:current``; it becomes a ``cell`` event that is stored, pushed on the websocket, sent to the webhook
when the backend asked for it, searchable, exported as JSON lines beside the media, and replayed after a crash
between its fsync and its event."""
from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

import vdbnb
from testkit.media import audio_fragments
from testkit.webhooks import WebhookReceiver
from testkit.wait import wait_until
from vdbnb.capture.kernel_record import frame
from vdbnb.cells import PRIVATE_TEXT, CellRecord

KERNEL = {"channel_id": "kernel:current", "type": "kernel", "name": "notebook"}
MIC = {"channel_id": "mic:default", "type": "audio", "name": "mic", "store": True}


def begin(server, channels=(KERNEL,), callback=None, metadata=None):
    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="nb", callback_url=callback, metadata=metadata)
    token = conn.generate_client_token(600)
    r = httpx.post(f"{server.url}/capture/session/start", headers={"x-access-token": token},
                   json={"session_id": cap.id, "channels": list(channels)})
    assert r.status_code == 200, r.text
    return conn, cap, token, r.json()["data"]


def cell(source, t0, dur=0.5, status="ok", **kw):
    return CellRecord(start=t0, end=t0 + dur, status=status, source=source, **kw)


def post(server, sid, token, rec, seq):
    return httpx.post(f"{server.url}/capture/session/{sid}/fragment", headers={"x-access-token": token},
                      content=frame(rec, seq))


def test_kernel_stream_is_one_more_rtstream_of_the_session(server):
    conn, cap, token, started = begin(server, (MIC, KERNEL))
    assert {c["channel_id"] for c in started["channels"]} == {"mic:default", "kernel:current"}
    rts = cap.refresh().get_rtstream("kernel")
    assert len(rts) == 1 and rts[0].channel_id == "kernel" and rts[0].media_types == ["cell"]
    d = conn.get(f"rtstream/{rts[0].id}")
    assert d["channel_id"] == "kernel" and d["source_channel_id"] == "kernel:current" and not d["is_primary"]
    # the kernel stream holds cells, not media: no transcript, no index, with a clear reason
    for path, body in ((f"rtstream/{rts[0].id}/transcription", {"action": "start"}),
                       (f"rtstream/{rts[0].id}/index/scene", {"extraction_type": "transcript"})):
        r = httpx.post(f"{server.url}/{path}", headers=server.headers(), json=body)
        assert r.status_code == 400 and r.json()["error_code"] in ("NOT_AUDIO", "NOT_MEDIA"), r.text
    # a kernel channel is named kernel:<name> and typed kernel, nothing else
    cap2 = conn.create_capture_session(end_user_id="nb")
    for bad in ({"channel_id": "kernel:current", "type": "audio"}, {"channel_id": "mic:x", "type": "kernel"}):
        r = httpx.post(f"{server.url}/capture/session/start", headers={"x-access-token": token},
                       json={"session_id": cap2.id, "channels": [bad]})
        assert r.status_code == 400 and "kernel" in r.json()["message"], r.text


def test_cells_are_stored_pushed_searchable_and_sent_to_the_webhook_when_asked(server):
    hooks = WebhookReceiver().start()
    pushed, lock = [], threading.Lock()
    try:
        conn, cap, token, _ = begin(server, callback=hooks.url, metadata={"webhook_events": ["cell"]})

        def on_event(ev):
            with lock:
                pushed.append(ev)
        listener = conn.listen(on_event)   # returns once the websocket is open
        try:
            t = time.time()
            cells = [
                cell("orders = load_orders()\norders.head()", t, outputs=[
                    {"output_type": "execute_result", "mime_types": ["text/plain", "text/html"],
                     "text": "   order_id  amount\n0  17  9.5"}]),
                cell("merged = orders.merge(customers, on='customer_id')", t + 1, status="error", ename="KeyError",
                     evalue="'customer_id'", traceback="Traceback (most recent call last):\n  ...\nKeyError: "
                     "'customer_id'"),
                CellRecord(start=t + 2, end=t + 2.2, private=True),
                cell("customers.columns.tolist()", t + 3, outputs=[
                    {"output_type": "execute_result", "mime_types": ["text/plain"], "text": "['id', 'name']"}]),
                cell("print('the join is fixed now')", t + 4, outputs=[
                    {"output_type": "stream", "name": "stdout", "mime_types": ["text/plain"],
                     "text": "the join is fixed now"}]),
            ]
            for seq, rec in enumerate(cells):
                r = post(server, cap.id, token, rec, seq)
                assert r.status_code == 200 and r.json()["data"]["duplicate"] is False, r.text
            # a resend (the kernel did not get the ack) is acknowledged again and not stored twice
            r = post(server, cap.id, token, cells[1], 1)
            assert r.status_code == 200 and r.json()["data"]["duplicate"] is True

            evs = wait_until(lambda: [e for e in cap.events() if e.channel == "kernel"] if len(
                [e for e in cap.events() if e.channel == "kernel"]) == 5 else None, timeout=20)
            assert [e.event for e in evs] == ["cell"] * 5
            err = next(e for e in evs if e.label == "error")
            assert err.text.startswith("merged = ") and err.data["ename"] == "KeyError"
            assert err.data["evalue"] == "'customer_id'" and err.data["error"] == "KeyError: 'customer_id'"
            assert (err.start, err.end) == pytest.approx((t + 1, t + 1.5), abs=1e-3)
            assert err.channel_id == "kernel" and err.rtstream_id == cap.refresh().get_rtstream("kernel")[0].id
            priv = next(e for e in evs if e.label == "private")
            assert priv.text == PRIVATE_TEXT and priv.data == {"private": True, "duration": 0.2, "seq": 2}

            # websocket: channel kernel, event cell, times in ms
            got = wait_until(lambda: [e for e in list(pushed) if e.channel == "kernel"] if len(
                [e for e in list(pushed) if e.channel == "kernel"]) >= 5 else None, timeout=20)
            assert {e.event for e in got} == {"cell"} and any(e.data.get("ename") == "KeyError" for e in got)
            # webhook (asked for with metadata webhook_events): the cells, in order
            assert wait_until(lambda: sum(1 for x in hooks.received if x["json"].get("channel") == "kernel") >= 5, timeout=20)
            bodies = [x["json"] for x in hooks.received if x["json"].get("channel") == "kernel"]
            assert [b["data"].get("seq") for b in bodies[:5]] == [0, 1, 2, 3, 4]
            assert bodies[1]["event"] == "cell" and bodies[1]["data"]["start"] == int(round((t + 1) * 1000))
        finally:
            listener.stop()

        # search: the failing cell first, by its error text; on the stream and across the collection
        rts = cap.get_rtstream("kernel")[0]
        hits = wait_until(lambda: rts.search("KeyError customer_id").shots or None, timeout=60)
        assert hits[0].kind == "cell" and hits[0].text.startswith("KeyError: 'customer_id'"), hits
        assert hits[0].start == pytest.approx(t + 1, abs=1e-3)
        coll = conn.get_collection().search("KeyError customer_id")
        assert coll.shots[0].kind == "cell" and coll.shots[0].session_id == cap.id
        fixed = rts.search("where did I fix the join")
        assert "fixed" in fixed.shots[0].text
        # nothing of the private cell is searchable
        assert all(PRIVATE_TEXT not in s.text for s in rts.search("a private cell ran").shots)
    finally:
        hooks.stop()


def test_without_asking_no_cell_reaches_the_webhook(server):
    hooks = WebhookReceiver().start()
    try:
        conn, cap, token, _ = begin(server, callback=hooks.url)
        assert post(server, cap.id, token, cell("1 + 1", time.time()), 0).status_code == 200
        httpx.post(f"{server.url}/capture/session/{cap.id}/stop", headers={"x-access-token": token})
        assert wait_until(lambda: any(x["json"].get("event") == "capture_session.stopped" for x in hooks.received), timeout=20)
        assert [e.channel for e in cap.events() if e.channel == "kernel"] == ["kernel"]
        assert not [x for x in hooks.received if x["json"].get("channel") == "kernel"]
    finally:
        hooks.stop()


def test_bad_cells_get_a_clear_400_and_are_not_stored(server):
    conn, cap, token, _ = begin(server, (MIC, KERNEL))
    url, h = f"{server.url}/capture/session/{cap.id}/fragment", {"x-access-token": token}
    t = time.time()
    good = frame(cell("x = 1", t), 0)
    # a cell on the microphone channel, audio on the kernel channel
    r = httpx.post(url, headers=h, content=good.replace(b'"kernel:current"', b'"mic:default"   '))
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_KIND", r.text
    audio = audio_fragments("kernel:current", 0.3)[0]
    r = httpx.post(url, headers=h, content=audio.pack())
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_KIND", r.text
    # a record that is not one
    from vdbnb.media.fragments import Fragment
    for payload, why in ((b"not json", "not JSON"),
                         (json.dumps({"start": t + 1, "end": t, "status": "ok"}).encode(), "before start"),
                         (json.dumps({"start": t, "end": t, "status": "maybe"}).encode(), "status"),
                         (json.dumps({"start": t - 9, "end": t, "status": "ok"}).encode(), "start/end")):
        f = Fragment("kernel:current", 0, "cell", "json", t, t, [{"pts": t, "size": len(payload)}], payload)
        r = httpx.post(url, headers=h, content=f.pack())
        assert r.status_code == 400 and why in r.json()["message"], r.text
    assert not [e for e in cap.events() if e.channel == "kernel"]
    assert post(server, cap.id, token, cell("x = 1", t), 0).status_code == 200


def test_cells_are_exported_as_json_lines_beside_the_media(server):
    conn, cap, token, _ = begin(server, (MIC, KERNEL))
    h = {"x-access-token": token}
    t = time.time()
    for f in audio_fragments("mic:default", 2.0, t0=t):
        httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h, content=f.pack()).raise_for_status()
    recs = [cell("a = 1", t + 0.1), cell("b = a / 0", t + 0.8, status="error", ename="ZeroDivisionError",
                                        evalue="division by zero")]
    for i, rec in enumerate(recs):
        assert post(server, cap.id, token, rec, i).status_code == 200
    httpx.post(f"{server.url}/capture/session/{cap.id}/stop", headers=h).raise_for_status()
    cap.wait_for("stopped", timeout=30)
    d = cap.export(wait=True, timeout=120)
    assert d["export_status"] == "exported", d
    (side,) = d["sidecars"]
    assert side["channel_id"] == "kernel:current" and side["kind"] == "cell" and side["name"] == "kernel-current.jsonl"
    lines = [json.loads(x) for x in httpx.get(side["url"], follow_redirects=True).text.splitlines()]
    assert [x["text"] for x in lines] == ["a = 1", "b = a / 0"]
    assert lines[1]["data"]["ename"] == "ZeroDivisionError" and lines[1]["event"] == "cell"
    if server.backend.shared:  # in the bucket, beside the exported media
        assert f"exports/{cap.id}/kernel-current.jsonl" in server.backend.s3.objects(server.backend.media_url,
                                                                                   f"exports/{cap.id}/")
    else:
        assert (server.data_dir / "exports" / cap.id / "kernel-current.jsonl").stat().st_mode & 0o077 == 0
    # the URL is signed like media: without its signature, or for another file, nothing
    assert httpx.get(side["url"].split("?")[0]).status_code == 401
    again = cap.export(wait=True)
    assert again["sidecars"][0]["name"] == "kernel-current.jsonl"


def test_a_cell_stored_just_before_a_crash_gets_its_event_on_restart(server):
    conn, cap, token, _ = begin(server)
    assert post(server, cap.id, token, cell("import pandas as pd", time.time()), 0).status_code == 200
    assert wait_until(lambda: [e for e in cap.events() if e.channel == "kernel"], timeout=20)
    server.kill()
    # the server died after the fragment was stored and before its event: the row is not there
    n = server.backend.execute(server.data_dir, "DELETE FROM events WHERE channel='kernel'")
    assert n == 1
    server.start()
    evs = wait_until(lambda: [e for e in cap.events() if e.channel == "kernel"], timeout=20)
    assert [e.text for e in evs] == ["import pandas as pd"]


def test_a_cell_holding_a_secret_raises_the_builtin_alert_before_its_event(server):
    """The kernel redacts with the one redactor (vdbnb/redaction.py) and the server raises the same built-in
    alert as for the screen and speech: kind, place (field), time, fingerprint, never a character."""
    from testkit.leaks import leaked, random_api_key, random_secret
    from vdbnb.capture.kernel_record import build_record
    from vdbnb.capture.kernel_taps import CellRun
    key, pw = random_api_key(), random_secret(14)
    conn, cap, token, _ = begin(server)
    t = time.time()
    run = CellRun(t)
    run.end, run.raw = t + 0.4, f"os.environ['STRIPE_KEY'] = '{key}'\nprint(cfg)"
    run.streams = {"stdout": [f"user: ops\npassword: {pw}\n"]}
    rec = build_record(run)
    assert rec.redacted == ["api_key", "password"] and not leaked(key[6:], rec.to_payload().decode())
    assert post(server, cap.id, token, rec, 0).status_code == 200
    def events():
        return httpx.get(f"{server.url}/collection/default/events", headers=server.headers(),
                         params={"session_id": cap.id, "limit": 1000}).json()["data"]["events"]
    evs = wait_until(lambda: (x := events()) and any(e["channel"] == "kernel" for e in x) and x, timeout=20)
    alerts = {e["label"]: e for e in evs if e["channel"] == "alert"}
    assert set(alerts) == {"api_key", "password"}, [(e["channel"], e["label"]) for e in evs]
    assert alerts["api_key"]["data"]["field"] == "source"
    assert alerts["password"]["data"]["field"] == "outputs.0.text"
    cell_ev = next(e for e in evs if e["channel"] == "kernel")
    for a in alerts.values():
        assert a["data"]["builtin"] is True and a["data"]["detector"] == a["label"] and a["channel_id"] == "kernel"
        assert a["data"]["fingerprint"].startswith("fp-") and a["data"]["source_event_id"] == cell_ev["id"]
        assert a["start"] == pytest.approx(t, abs=1e-3) and "notebook cell" in a["text"]
        assert a["emitted_at"] <= cell_ev["emitted_at"]    # the alert first
    blob = json.dumps(evs)
    assert "[api_key redacted]" in blob and not leaked(key[6:], blob) and not leaked(pw, blob)


def test_a_cell_record_cannot_smuggle_text_in_as_a_finding(server):
    conn, cap, token, _ = begin(server)
    url, h = f"{server.url}/capture/session/{cap.id}/fragment", {"x-access-token": token}
    t = time.time()
    from vdbnb.media.fragments import Fragment
    for bad in ([{"detector": "api_key", "fingerprint": "sk-live-abcdef"}], [{"detector": "ssn", "fingerprint":
                                                                              "fp-0123456789abcdef"}], "x"):
        payload = json.dumps({"start": t, "end": t, "status": "ok", "source": "x", "findings": bad}).encode()
        f = Fragment("kernel:current", 0, "cell", "json", t, t, [{"pts": t, "size": len(payload)}], payload)
        r = httpx.post(url, headers=h, content=f.pack())
        assert r.status_code == 400 and "finding" in r.json()["message"], r.text
