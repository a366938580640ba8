"""Deleting a capture session takes everything derived from it (media, events, transcripts, index results,
alerts, search rows and their vectors, exports, clips, webhooks), through the API and `vdbnb delete`; a
retention setting deletes old sessions; expired tokens and tickets, delivered webhooks and stale clips are
purged; websocket tickets open one connection, within a short time, and the official SDK still works."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from testkit.server import ServerProc
from testkit.media import audio_fragments, pcm_fragments, screen_fragments, text_image
from testkit.speech import speak_16k
from testkit.webhooks import WebhookReceiver

MARK_SAID = "the zeppelin quartermaster reviews the budget"
MARK_SHOWN = "QUARTERMASTER LEDGER ZEPPELIN"


def _session(srv, hooks=None, ai=True) -> tuple[str, dict, dict]:
    """A stopped session with speech, a screen, a transcript, indexes, an alert, webhooks, an export and a
    clip; returns (session id, client token header, rtstream ids by channel)."""
    h = srv.headers()
    body = {"end_user_id": "ret", **({"callback_url": hooks.url} if hooks else {})}
    sid = httpx.post(f"{srv.url}/collection/default/capture/session", headers=h, json=body).json()["data"]["session_id"]
    tok = {"x-access-token": httpx.post(f"{srv.url}/capture/session/token", headers=h, json={}).json()["data"]["token"]}
    t0 = time.time() - 30
    pcm = np.concatenate([np.zeros(16000, np.float32), speak_16k(MARK_SAID, 150), np.zeros(40000, np.float32)])
    pcm48 = np.interp(np.arange(len(pcm) * 3) / 3, np.arange(len(pcm)), pcm).astype(np.float32)
    afr = pcm_fragments("mic:default", pcm48, t0)
    vfr = screen_fragments("display:1", [(text_image([MARK_SHOWN, "password: Zq7Rt5Kw3Nm8Pv"]),
                                          {"window_title": "Ledger", "app": "xterm"})] * 8, t0)
    httpx.post(f"{srv.url}/capture/session/start", headers=tok, json={"session_id": sid, "channels": [
        {"channel_id": "mic:default", "type": "audio", "store": True},
        {"channel_id": "display:1", "type": "video", "store": True}]}).raise_for_status()
    for f in (afr[0], vfr[0]):
        httpx.post(f"{srv.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack()).raise_for_status()
    rts = {r["channel_id"]: r["id"] for r in httpx.get(f"{srv.url}/collection/default/capture/session/{sid}",
                                                         headers=h).json()["data"]["rtstreams"]}
    if ai:
        httpx.post(f"{srv.url}/rtstream/{rts['mic']}/transcription", headers=h, json={"action": "start"})
        httpx.post(f"{srv.url}/rtstream/{rts['mic']}/index/scene", headers=h, json={
            "extraction_type": "transcript", "extraction_config": {"segmenter": "word", "segmentation_value": 3}})
        vidx = httpx.post(f"{srv.url}/rtstream/{rts['screen']}/index/scene", headers=h, json={
            "extraction_type": "time", "extraction_config": {"time": 1}}).json()["data"]["rtstream_index_id"]
        eid = httpx.post(f"{srv.url}/rtstream/event", headers=h, json={"event_prompt": "a ledger", "label": "l"}) \
            .json()["data"]["event_id"]
        httpx.post(f"{srv.url}/rtstream/{rts['screen']}/index/{vidx}/alert", headers=h,
                   json={"event_id": eid, **({"callback_url": hooks.url} if hooks else {})})
    for f in afr[1:] + vfr[1:]:
        httpx.post(f"{srv.url}/capture/session/{sid}/fragment", headers=tok, content=f.pack()).raise_for_status()
    httpx.post(f"{srv.url}/capture/session/{sid}/stop", headers=tok).raise_for_status()
    if ai:
        deadline = time.time() + 180
        while time.time() < deadline:
            evs = httpx.get(f"{srv.url}/collection/default/events", headers=h,
                            params={"session_id": sid}).json()["data"]["events"]
            kinds = {e["channel"] for e in evs}
            # the sentence is in a final transcript (tiny.en may mishear the rarer words: any of them will do)
            heard = any(w in (e["text"] or "").lower() for e in evs if e["channel"] == "transcript"
                        and e.get("is_final") for w in MARK_SAID.split() if len(w) > 3)
            if {"transcript", "visual_index", "alert"} <= kinds and heard:
                break
            time.sleep(0.5)
        assert {"transcript", "visual_index", "alert"} <= kinds and heard, (kinds, [e["text"] for e in evs])
    for _ in range(300):
        d = httpx.post(f"{srv.url}/collection/default/capture/session/{sid}/export", headers=h).json()["data"]
        if d.get("export_status") != "exporting":
            break
        time.sleep(0.2)
    assert d["export_status"] == "exported", d
    clip = httpx.get(f"{srv.url}/rtstream/{rts['mic']}/stream", headers=h,
                     params={"start": t0 + 1, "end": t0 + 3}).json()["data"]["stream_url"]
    assert httpx.get(clip).status_code == 200
    return sid, tok, {**rts, "export_url": d["stream_url"], "clip_url": clip}


def _rows_naming(path, needles: list[str]) -> list[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = []
    try:
        for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            try:
                rows = db.execute(f'SELECT * FROM "{t}"').fetchall()
            except sqlite3.DatabaseError:
                continue
            for r in rows:
                blob = json.dumps([v for v in r if isinstance(v, str)]).lower()
                out += [f"{t}: {n}" for n in needles if n.lower() in blob]
    finally:
        db.close()
    return out


def _bytes_holding(root, needles: list[bytes]) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and p.name != "server-test.log":
            b = p.read_bytes().lower()
            hits += [f"{p.relative_to(root)}: {n!r}" for n in needles if n.lower() in b]
    return hits


@pytest.mark.slow
def test_delete_takes_everything_derived(server_factory):
    hooks = WebhookReceiver().start()
    srv = server_factory().start()
    try:
        keep, _, keep_ids = _session(srv, ai=False)  # another session: untouched by the delete
        sid, tok, ids = _session(srv, hooks)
        h = srv.headers()
        hits = httpx.post(f"{srv.url}/rtstream/collection/default/search", headers=h,
                          json={"query": "zeppelin quartermaster"}).json()["data"]["results"]
        assert hits and all(x["session_id"] == sid for x in hits)
        assert (srv.data_dir / "media" / sid).exists() and (srv.data_dir / "exports" / sid).exists()
        # a client token cannot delete; a recording session cannot be deleted; an unknown one is 404
        assert httpx.delete(f"{srv.url}/collection/default/capture/session/{sid}", headers=tok).status_code == 403
        assert httpx.delete(f"{srv.url}/collection/default/capture/session/cap-nope", headers=h).status_code == 404
        r = httpx.delete(f"{srv.url}/collection/default/capture/session/{sid}", headers=h)
        assert r.status_code == 200, r.text
        d = r.json()["data"]["deleted"]
        assert d["events"] and d["fragments"] and d["search_rows"] and d["videos"] and d["files"], d
        # gone from the API, the media URLs and search
        assert httpx.get(f"{srv.url}/collection/default/capture/session/{sid}", headers=h).status_code == 404
        assert httpx.get(f"{srv.url}/rtstream/{ids['mic']}", headers=h).status_code == 404
        assert httpx.get(ids["export_url"]).status_code == 404 and httpx.get(ids["clip_url"]).status_code == 404
        assert httpx.post(f"{srv.url}/rtstream/collection/default/search", headers=h,
                          json={"query": "zeppelin quartermaster"}).json()["data"]["results"] == []
        evs = httpx.get(f"{srv.url}/collection/default/events", headers=h, params={"session_id": sid}).json()
        assert evs["data"]["events"] == []
        assert httpx.get(f"{srv.url}/collection/default/capture/session/{keep}", headers=h).status_code == 200
    finally:
        srv.stop()
        hooks.stop()
    dd = srv.data_dir
    assert not (dd / "media" / sid).exists() and not (dd / "exports" / sid).exists()
    assert not any((dd / "clips" / r).exists() for r in (ids["mic"], ids["screen"]))
    assert (dd / "media" / keep).exists() and (dd / "clips" / keep_ids["mic"]).exists()
    needles = [sid, ids["mic"], ids["screen"], "zeppelin", "quartermaster"]
    assert _rows_naming(dd / "vdbnb.sqlite3", needles) == []
    assert _rows_naming(dd / "search.sqlite3", needles) == []
    # not in the files' bytes either: no free page, WAL frame or full-text segment still holds the words
    assert _bytes_holding(dd, [b"zeppelin", b"quartermaster", sid.encode()]) == []
    # the vectors of the deleted rows are zeroed: as many live vectors as rows
    from vdbnb.server.search import SearchIndex
    with SearchIndex(dd / "search.sqlite3") as ix:
        rows = ix._db().execute("SELECT count(*) FROM segments").fetchone()[0]
        assert len(ix.vectors) == rows


@pytest.mark.slow
def test_vdbnb_delete_cli(tmp_path):
    srv = ServerProc(tmp_path / "d")
    srv.args = ["--no-ai"]
    srv.start()
    try:
        sid, tok, _ = _session(srv, ai=False)
        sid2 = httpx.post(f"{srv.url}/collection/default/capture/session", headers=srv.headers(),
                          json={"end_user_id": "live"}).json()["data"]["session_id"]
        httpx.post(f"{srv.url}/capture/session/start", headers=tok, json={"session_id": sid2, "channels": [
            {"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
        for f in audio_fragments("mic:default", 0.5):
            httpx.post(f"{srv.url}/capture/session/{sid2}/fragment", headers=tok, content=f.pack())
        env = {**os.environ, "VDBNB_URL": srv.url, "VDBNB_API_KEY": srv.api_key}
        r = subprocess.run([sys.executable, "-m", "vdbnb", "delete", "--yes", sid, sid2], capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == 1, (r.stdout, r.stderr)  # the recording one was refused, and said so
        assert f"{sid}: deleted" in r.stdout and f"{sid2}: not deleted" in r.stderr and "stop it" in r.stderr
        h = srv.headers()
        assert httpx.get(f"{srv.url}/collection/default/capture/session/{sid}", headers=h).status_code == 404
        assert httpx.get(f"{srv.url}/collection/default/capture/session/{sid2}", headers=h).status_code == 200
        assert not (srv.data_dir / "media" / sid).exists()
    finally:
        srv.stop()


def test_retention_and_purge_at_start(tmp_path):
    dd = tmp_path / "d"
    srv = ServerProc(dd)
    srv.args = ["--no-ai"]
    srv.start()
    try:
        old, _, ids = _session(srv, ai=False)
        h = srv.headers()
        httpx.post(f"{srv.url}/capture/session/token", headers=h, json={"expires_in": 1}).raise_for_status()
        httpx.get(f"{srv.url}/collection/default/websocket", headers=h).raise_for_status()
        fresh = httpx.post(f"{srv.url}/collection/default/capture/session", headers=h,
                           json={"end_user_id": "new"}).json()["data"]["session_id"]
    finally:
        srv.stop()
    db = sqlite3.connect(dd / "vdbnb.sqlite3")
    day = 86400
    with db:  # as if the session stopped 3 days ago, a webhook was delivered 2 days ago, a ticket expired
        db.execute("UPDATE sessions SET stopped_at=?, updated_at=?, created_at=? WHERE id=?",
                   (time.time() - 3 * day,) * 3 + (old,))
        db.execute("INSERT INTO webhook_outbox (msg_id, session_id, url, body, created_at, delivered_at) VALUES "
                   "('msg_old', ?, 'http://127.0.0.1:9/h', '{}', ?, ?)", (fresh, time.time() - 2 * day,
                                                                       time.time() - 2 * day))
        db.execute("UPDATE ws_tickets SET expires_at=?", (time.time() - 1,))
    n_tokens = db.execute("SELECT count(*) FROM client_tokens").fetchone()[0]
    db.close()
    clip = next((dd / "clips" / ids["mic"]).glob("*.mp4"))
    os.utime(clip, (time.time() - 2 * 3600,) * 2)
    time.sleep(1.2)  # the 1-second client token expires
    srv = ServerProc(dd, env={"VDBNB_RETENTION_DAYS": "2"})
    srv.args = ["--no-ai"]
    srv.start()
    try:
        h = srv.headers()
        deadline = time.time() + 30
        while time.time() < deadline and httpx.get(f"{srv.url}/collection/default/capture/session/{old}",
                                                   headers=h).status_code != 404:
            time.sleep(0.2)
        assert httpx.get(f"{srv.url}/collection/default/capture/session/{old}", headers=h).status_code == 404
        assert httpx.get(f"{srv.url}/collection/default/capture/session/{fresh}", headers=h).status_code == 200
    finally:
        srv.stop()
    db = sqlite3.connect(dd / "vdbnb.sqlite3")
    assert db.execute("SELECT count(*) FROM ws_tickets").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM client_tokens").fetchone()[0] == n_tokens - 1
    assert db.execute("SELECT count(*) FROM webhook_outbox WHERE msg_id='msg_old'").fetchone()[0] == 0
    db.close()
    assert not clip.exists() and not (dd / "media" / old).exists()


def test_websocket_tickets_are_single_use_and_short_lived(server_factory):
    import websockets
    srv = server_factory(env={"VDBNB_WS_TICKET_TTL_S": "2"})
    srv.args = ["--no-ai"]
    srv.start()
    url = httpx.get(f"{srv.url}/collection/default/websocket", headers=srv.headers()).json()["data"]["websocket_url"]

    async def opens(u) -> bool:
        try:
            async with websockets.connect(u) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 5)).get("type") == "connected"
        except websockets.exceptions.InvalidStatus as e:  # refused in the handshake
            assert e.response.status_code == 403, e
            return False
        except websockets.exceptions.ConnectionClosed as e:
            assert e.rcvd and e.rcvd.code == 4401, e
            return False

    assert asyncio.run(opens(url)) is True
    assert asyncio.run(opens(url)) is False, "a ticket opens one connection"
    url2 = httpx.get(f"{srv.url}/collection/default/websocket", headers=srv.headers()).json()["data"]["websocket_url"]
    time.sleep(2.5)
    assert asyncio.run(opens(url2)) is False, "an expired ticket opens nothing"
    # the official SDK (URL from collection/{cid}/websocket, then connect) still works
    videodb = pytest.importorskip("videodb")
    conn = videodb.connect(api_key=srv.api_key, base_url=srv.url)

    async def sdk() -> str:
        ws = conn.connect_websocket()
        await ws.connect()
        cid = ws.connection_id
        await ws.close()
        return cid

    assert asyncio.run(sdk())
