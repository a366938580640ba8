"""Collections, capture sessions, client tokens, the recorder's R1–R3 calls, ingest and the event websocket."""
from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect

from ..events import new_id
from .auth import Auth, Principal
from .context import DEFAULT_COLLECTION, admin, base_url, ctx_of, principal, reader
from .errors import APIError, not_found
from .hub import Subscriber
from .ingest import IngestError
from .models import (MAX_OFFSET, CreateCollection, CreateSession, ExportRequest, StartCapture, TokenRequest,
                     epoch_q)
from .sessions import ACTIVE, STARTING, STOPPED, STOPPING
from .store import now

router = APIRouter()


def ok(data=None) -> dict:
    return {"success": True, "data": data if data is not None else {}}


def collection_row(request: Request, cid: str, p: Principal | None = None) -> dict:
    if p is not None:  # an agent token reads its own collection only
        Auth.require_collection(p, cid)
    r = ctx_of(request).store.one("SELECT * FROM collections WHERE id=?", (cid,))
    if not r:
        raise not_found("collection", cid)
    return r


def coll_dict(r: dict) -> dict:
    return {"id": r["id"], "name": r["name"], "description": r["description"], "is_public": bool(r["is_public"]),
            "created_at": r["created_at"]}


# ---------------------------------------------------------------- collections
@router.get("/collection", tags=["collections"])
def list_collections(request: Request, _: Principal = Depends(admin)):
    rows = ctx_of(request).store.all("SELECT * FROM collections ORDER BY created_at")
    return ok({"collections": [coll_dict(r) for r in rows]})


@router.post("/collection", tags=["collections"])
def create_collection(body: CreateCollection, request: Request, _: Principal = Depends(admin)):
    cid = new_id("c")
    ctx_of(request).store.insert("collections", {"id": cid, "name": body.name, "description": body.description,
                                                 "is_public": body.is_public, "created_at": now()})
    return ok(coll_dict(collection_row(request, cid)))


@router.get("/collection/{cid}", tags=["collections"])
def get_collection(cid: str, request: Request, p: Principal = Depends(reader)):
    return ok(coll_dict(collection_row(request, cid, p)))


# ---------------------------------------------------------------- capture sessions (backend, API key)
@router.post("/collection/{cid}/capture/session", tags=["capture"])
def create_capture_session(cid: str, body: CreateSession, request: Request, _: Principal = Depends(admin)):
    collection_row(request, cid)
    return ok(ctx_of(request).sessions.create(cid, body.end_user_id, body.callback_url, body.ws_connection_id,
                                              body.metadata))


@router.get("/collection/{cid}/capture/session", tags=["capture"])
def list_capture_sessions(cid: str, request: Request, status: str | None = None,
                          limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
                          p: Principal = Depends(reader)):
    collection_row(request, cid, p)
    sessions = ctx_of(request).sessions.list(cid, status, limit, offset)
    return ok({"sessions": sessions, "next_page": None if len(sessions) < limit else offset + limit})


@router.get("/collection/{cid}/capture/session/{sid}", tags=["capture"])
def get_capture_session(cid: str, sid: str, request: Request, p: Principal = Depends(reader)):
    Auth.require_collection(p, cid)
    s = ctx_of(request).sessions
    return ok(s.to_dict(s.row(sid, cid)))


@router.post("/collection/{cid}/capture/session/{sid}/export", tags=["capture"])
def export_capture_session(cid: str, sid: str, request: Request, body: ExportRequest | None = None,
                           _: Principal = Depends(admin)):
    ctx = ctx_of(request)
    row = ctx.sessions.row(sid, cid)
    from .exports import request_session_export
    return ok(request_session_export(ctx, row, (body.video_channel_id if body else None), base_url(request)))


@router.get("/collection/{cid}/events", tags=["events"])
def list_events(cid: str, request: Request, session_id: str | None = None, rtstream_id: str | None = None,
                channel: str | None = None, since: float | None = epoch_q(),
                limit: int = Query(1000, ge=1, le=10000), p: Principal = Depends(reader)):
    """vdbnb extension: stored events (the websocket is best effort; this is the record)."""
    collection_row(request, cid, p)
    evs = ctx_of(request).bus.history(cid, session_id, rtstream_id, channel, since, limit)
    return ok({"events": [e.row() for e in evs]})


# ---------------------------------------------------------------- client tokens
@router.post("/capture/session/token", tags=["capture"])
def generate_client_token(request: Request, body: TokenRequest | None = None, _: Principal = Depends(admin)):
    body = body or TokenRequest()
    cid = request.headers.get("x-collection-id") or DEFAULT_COLLECTION
    collection_row(request, cid)
    return ok(ctx_of(request).auth.mint_client_token(cid, body.expires_in, body.user_id))


# ---------------------------------------------------------------- websocket (events)
@router.get("/collection/{cid}/websocket", tags=["events"])
def websocket_url(cid: str, request: Request, p: Principal = Depends(reader)):
    collection_row(request, cid, p)
    ticket = ctx_of(request).auth.mint_ws_ticket(cid, ctx_of(request).settings.ws_ticket_ttl_s)
    ws_base = base_url(request).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return ok({"websocket_url": f"{ws_base}/ws/{cid}?ticket={ticket}"})


@router.websocket("/ws/{cid}")
async def events_ws(ws: WebSocket, cid: str):
    ctx = ws.app.state.ctx
    try:
        coll = await asyncio.to_thread(ctx.auth.check_ws_ticket, ws.query_params.get("ticket"))
        if coll != cid:
            raise APIError(403, "ticket is for another collection", "WRONG_COLLECTION")
    except APIError as e:
        await ws.close(code=4401 if e.status == 401 else 4403, reason=e.message[:120])
        return
    await ws.accept()
    conn_id = ws.query_params.get("connection_id") or "ws-" + uuid.uuid4().hex[:16]
    sub = Subscriber(conn_id, cid, ws.query_params.get("all") in ("1", "true", "yes"))
    ctx.hub.add(sub)
    await ws.send_json({"type": "connected", "connection_id": conn_id, "collection_id": cid})

    async def reader():
        while True:
            msg = await ws.receive_text()
            try:
                m = json.loads(msg)
            except ValueError:
                continue
            if isinstance(m, dict) and m.get("action") == "subscribe":
                sub.all_events = bool(m.get("all", True))
            elif isinstance(m, dict) and m.get("action") == "ping":
                await ws.send_json({"type": "pong", "ts": now()})

    rtask = asyncio.create_task(reader())
    try:
        while True:
            getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({getter, rtask}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await ws.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        rtask.cancel()
        ctx.hub.remove(conn_id)


# ---------------------------------------------------------------- recorder side (client token)
def _session_for_client(request_or_ws, p: Principal, sid: str) -> dict:
    ctx = request_or_ws.app.state.ctx
    Auth.require_capture(p)
    row = ctx.sessions.row(sid)
    Auth.require_collection(p, row["collection_id"])
    return row


def _stream_info(ctx, row: dict, base: str) -> dict:
    ws_base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    ingest_url = f"{ws_base}/capture/session/{row['id']}/ingest"
    chans = []
    for s in ctx.sessions.rtstreams(row["id"]):
        chans.append({"channel_id": s["source_channel_id"], "channel_name": s["name"], "stream_id": s["id"],
                      "rtstream_id": s["id"], "rtsp_url": None, "ingest_url": ingest_url})
    return {"streaming_session_id": row["id"], "session_id": row["id"], "status": row["status"],
            "created_at": row["created_at"], "ssl_certificate_hash": None, "ingest_url": ingest_url,
            "fragment_url": f"{base}/capture/session/{row['id']}/fragment", "channels": chans,
            "acked": ctx.ingest.acked(row["id"])}


@router.post("/capture/session/start", tags=["recorder"])
def start_capture(body: StartCapture, request: Request, p: Principal = Depends(principal)):
    ctx = ctx_of(request)
    row = _session_for_client(request, p, body.session_id)
    if p.kind == "client_token" and body.callback_url and body.callback_url != row["callback_url"]:
        raise APIError(403, "A client token cannot set or change the session's callback_url: the backend sets it "
                       "with the API key when it creates the session (create_capture_session(callback_url=...)).",
                       "CALLBACK_NOT_ALLOWED")
    chans = [c.model_dump() for c in body.channels]
    row = ctx.sessions.start(body.session_id, row["collection_id"], chans, body.primary_video_channel_id,
                             body.callback_url, body.ws_connection_id)
    return ok(_stream_info(ctx, row, base_url(request)))


@router.get("/capture/session/{sid}", tags=["recorder"])
def poll_capture(sid: str, request: Request, p: Principal = Depends(principal)):
    ctx = ctx_of(request)
    return ok(_stream_info(ctx, _session_for_client(request, p, sid), base_url(request)))


@router.post("/capture/session/{sid}/stop", tags=["recorder"])
def stop_capture(sid: str, request: Request, p: Principal = Depends(principal)):
    ctx = ctx_of(request)
    row = _session_for_client(request, p, sid)
    ctx.kernel.wait_idle(sid)   # the kernel's cells have their events before the session says stopped
    if row["status"] in (STARTING, ACTIVE):
        ctx.sessions.transition(sid, STOPPING)
        ctx.sessions.transition(sid, STOPPED)
    elif row["status"] == STOPPING:
        ctx.sessions.transition(sid, STOPPED)
    elif row["status"] not in (STOPPED, "exported"):
        raise APIError(409, f"capture session {sid} is {row['status']!r}: nothing to stop", "INVALID_STATE")
    return ok({"success": True, "session_id": sid, "status": ctx.sessions.row(sid)["status"]})


@router.post("/capture/session/{sid}/fragment", tags=["recorder"])
async def post_fragment(sid: str, request: Request, p: Principal = Depends(principal)):
    ctx = ctx_of(request)
    await asyncio.to_thread(_session_for_client, request, p, sid)
    buf = await request.body()
    try:
        frag, dup = await asyncio.to_thread(ctx.ingest.accept, sid, buf)
    except IngestError as e:
        raise APIError(e.status, e.message, e.code) from None
    return ok({"channel_id": frag.channel_id, "seq": frag.seq, "duplicate": dup})


@router.websocket("/capture/session/{sid}/ingest")
async def ingest_ws(ws: WebSocket, sid: str):
    ctx = ws.app.state.ctx
    token = ws.headers.get("x-access-token") or ws.query_params.get("token")
    if not token:
        # a browser cannot set headers on a websocket, and a token in the URL ends up in access logs: it sends
        # {"type": "auth", "token": "st-…"} as its first message instead
        await ws.accept()
        try:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
        except (asyncio.TimeoutError, ValueError, KeyError, RuntimeError, WebSocketDisconnect):
            token = None
    try:
        p = await asyncio.to_thread(ctx.auth.authenticate, token)
        row = await asyncio.to_thread(_session_for_client, ws, p, sid)
    except APIError as e:
        await ws.close(code=4401 if e.status == 401 else 4403 if e.status == 403 else 4404, reason=e.message[:120])
        return
    if ws.client_state.name == "CONNECTING":
        await ws.accept()
    ctx.ingest.connections[sid] = ctx.ingest.connections.get(sid, 0) + 1
    if ctx.shared:  # the other replicas' watchdogs see this link (heartbeats keep it fresh)
        await asyncio.to_thread(ctx.store.upsert, "ingest_links",
                                {"session_id": sid, "replica": ctx.process_id, "links": ctx.ingest.connections[sid],
                                 "heartbeat_at": now()}, key=("session_id", "replica"))
    try:
        row, acked = await asyncio.to_thread(_resume, ctx, sid, row)
        await ws.send_json({"type": "hello", "session_id": sid, "status": row["status"], "acked": acked})
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes")
            if data is None:
                text = msg.get("text") or ""
                if '"ping"' in text:
                    await ws.send_json({"type": "pong", "ts": now()})
                continue
            try:
                frag, dup = await asyncio.to_thread(ctx.ingest.accept, sid, data)
                await ws.send_json({"type": "ack", "channel_id": frag.channel_id, "seq": frag.seq,
                                    "duplicate": dup})
            except IngestError as e:
                hdr = _peek_header(data)
                await ws.send_json({"type": "nack", "channel_id": hdr.get("channel_id"), "seq": hdr.get("seq"),
                                    "error_code": e.code, "message": e.message})
            except APIError as e:
                await ws.send_json({"type": "nack", "error_code": e.error_code, "message": e.message})
    except WebSocketDisconnect:
        pass
    finally:
        left = ctx.ingest.connections[sid] = max(0, ctx.ingest.connections.get(sid, 1) - 1)
        await asyncio.to_thread(_link_closed, ctx, sid, left)


def _link_closed(ctx, sid: str, left: int) -> None:
    ctx.store.update("sessions", "id", sid, last_media_at=now())
    if not left and ctx.shared:  # other replicas' watchdogs see it gone at once (not when its heartbeat is stale)
        ctx.store.execute("DELETE FROM ingest_links WHERE session_id=? AND replica=?", (sid, ctx.process_id))


def _resume(ctx, sid: str, row: dict) -> tuple[dict, dict]:
    """A recorder (re)connected: a session ended as recorder_lost within the grace resumes; returns the
    session row and what the server holds per channel (the hello)."""
    if ctx.sessions.resume_if_lost(sid):
        row = ctx.sessions.row(sid)
    return row, ctx.ingest.acked(sid)


def _peek_header(data: bytes) -> dict:
    try:
        n = int.from_bytes(data[:4], "big")
        h = json.loads(data[4:4 + n])
        return h if isinstance(h, dict) else {}
    except Exception:
        return {}


STATES_RECORDING = (STARTING, ACTIVE, STOPPING)
__all__ = ["router", "ok", "STATES_RECORDING", "STOPPED"]
