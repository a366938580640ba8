"""RTStream routes: status, transcripts, indexes, alerts, search, clips and exports; signed media files."""
from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from ..ai.engines import EngineMissing, require
from ..events import AUDIO_CATEGORIES, AUDIO_INDEX, KERNEL, TRANSCRIPT, VISUAL_INDEX, new_id
from .auth import Auth, Principal
from .context import admin, base_url, ctx_of, reader
from .errors import APIError, bad_request, not_found
from .models import (MAX_EPOCH_S, MAX_OFFSET, MAX_PAGE, Action, AlertRequest, EventRequest, IndexRequest,
                     RTStreamExport, SearchFilter, SearchRequest, TranscriptionRequest, epoch_q)
from .routes_capture import collection_row, ok
from .sessions import rtstream_dict
from .store import dec, now

router = APIRouter(tags=["rtstream"])


def rts_row(request: Request, rid: str, p: Principal | None = None) -> dict:
    r = ctx_of(request).store.one("SELECT * FROM rtstreams WHERE id=?", (rid,))
    if not r:
        raise not_found("rtstream", rid)
    if p is not None:  # an agent token reads its own collection only
        Auth.require_collection(p, r["collection_id"])
    return r


def index_row(request: Request, rid: str, idx: str) -> dict:
    r = ctx_of(request).store.one("SELECT * FROM scene_indexes WHERE id=? AND rtstream_id=?", (idx, rid))
    if not r:
        raise not_found("scene index", idx)
    return r


def index_dict(r: dict) -> dict:
    return {"rtstream_index_id": r["id"], "rtstream_id": r["rtstream_id"], "extraction_type": r["extraction_type"],
            "extraction_config": dec(r["extraction_config"]), "prompt": r["prompt"], "name": r["name"],
            "model_name": r["model_name"], "status": r["status"], "created_at": r["created_at"],
            "engine": (dec(r["model_config"], {}) or {}).get("engine")}


def _poke(request: Request) -> None:
    ctx_of(request).notifier.poke("work")  # the workers of every process sharing the store


def _require_ai(request: Request, *engines: str, what: str) -> None:
    """400 in the envelope, naming what to install, when this request needs AI the server does not have."""
    if ctx_of(request).pipelines is None:
        raise APIError(400, f"{what} needs the AI pipelines, which are not running on this server: install them "
                       "with `pip install 'vdbnb[ai]'` and start the server without --no-ai.", "AI_UNAVAILABLE")
    _need(*engines, what=what)


def _need(*engines: str, what: str) -> None:
    try:
        require(*engines, what=what)
    except EngineMissing as e:
        raise APIError(400, str(e), "AI_NOT_INSTALLED") from None


# ---------------------------------------------------------------- events (prompts for alerts)
@router.post("/rtstream/event")
def create_event(body: EventRequest, request: Request, _: Principal = Depends(admin)):
    eid = new_id("evt")
    ctx_of(request).store.insert("rt_events", {"id": eid, "collection_id": "default", "event_prompt":
                                               body.event_prompt, "label": body.label, "created_at": now()})
    return ok({"event_id": eid})


@router.get("/rtstream/event")
def list_rt_events(request: Request, _: Principal = Depends(admin)):
    rows = ctx_of(request).store.all("SELECT * FROM rt_events ORDER BY created_at")
    return ok({"events": [{"event_id": r["id"], "event_prompt": r["event_prompt"], "label": r["label"]}
                          for r in rows]})


# ---------------------------------------------------------------- collection search
@router.post("/rtstream/collection/{cid}/search")
def collection_search(cid: str, body: SearchRequest, request: Request, p: Principal = Depends(reader)):
    collection_row(request, cid, p)
    return ok({"results": _search(request, body, collection_id=cid)})


# ---------------------------------------------------------------- rtstreams
@router.get("/rtstream")
def list_rtstreams(request: Request, collection_id: str = "default", limit: int = Query(100, ge=1, le=1000),
                   offset: int = Query(0, ge=0, le=MAX_OFFSET), status: str | None = None, name: str | None = None,
                   ordering: str | None = None, who: Principal = Depends(reader)):
    Auth.require_collection(who, collection_id)
    q, p = "SELECT * FROM rtstreams WHERE collection_id=?", [collection_id]
    if status:
        q += " AND status=?"
        p.append(status)
    if name:
        q += " AND name LIKE ?"
        p.append(f"%{name}%")
    q += " ORDER BY created_at " + ("ASC" if ordering in ("created_at", "asc") else "DESC") + " LIMIT ? OFFSET ?"
    rows = ctx_of(request).store.all(q, p + [limit, offset])
    return ok({"results": [rtstream_dict(r) for r in rows], "count": len(rows),
               "next": offset + limit if len(rows) == limit else None, "previous": offset or None})


@router.get("/rtstream/{rid}")
def get_rtstream(rid: str, request: Request, p: Principal = Depends(reader)):
    return ok(rtstream_dict(rts_row(request, rid, p)))


@router.patch("/rtstream/{rid}/status")
def rtstream_status(rid: str, body: Action, request: Request, _: Principal = Depends(admin)):
    rts_row(request, rid)
    action = body.action or {"started": "start", "stopped": "stop"}.get(body.status or "")
    if action not in ("start", "stop"):
        raise bad_request("action must be 'start' or 'stop'")
    ctx_of(request).store.update("rtstreams", "id", rid, status="connected" if action == "start" else "stopped")
    return ok({"status": "connected" if action == "start" else "stopped"})


# ---------------------------------------------------------------- transcripts
@router.post("/rtstream/{rid}/transcription")
def transcription(rid: str, body: TranscriptionRequest, request: Request, _: Principal = Depends(admin)):
    r = rts_row(request, rid)
    if body.action == "start":
        _require_ai(request, "stt", what="A transcript")
        if r["channel_id"] not in AUDIO_CATEGORIES:
            raise bad_request(f"transcripts run on audio streams (mic, system_audio); this one is a "
                              f"{r['channel_id']} stream. Use cap.get_rtstream('mic')[0].", "NOT_AUDIO")
    status = "running" if body.action == "start" else "stopped"
    fields = {"transcript_status": status}
    if body.ws_connection_id:
        fields["transcript_ws"] = body.ws_connection_id
    ctx_of(request).store.update("rtstreams", "id", rid, **fields)
    _poke(request)
    engine = body.engine or "faster-whisper:tiny.en"
    return ok({"status": status, "engine": engine, "updated_at": now()})


@router.get("/rtstream/{rid}/transcription/status")
def transcription_status(rid: str, request: Request, p: Principal = Depends(reader)):
    r = rts_row(request, rid, p)
    return ok({"status": r["transcript_status"] or "not_configured", "engine": "faster-whisper:tiny.en",
               "language": "en"})


@router.get("/rtstream/{rid}/transcription")
def get_transcription(rid: str, request: Request, page: int = Query(1, ge=1, le=MAX_PAGE), page_size: int = Query(100, ge=1,
                      le=1000), start: float | None = epoch_q(), end: float | None = epoch_q(), since: float | None = epoch_q(),
                      engine: str | None = None, who: Principal = Depends(reader)):
    rts_row(request, rid, who)
    q, p = "SELECT * FROM events WHERE rtstream_id=? AND channel=? AND is_final=1", [rid, TRANSCRIPT]
    for cond, val in (("\"end\" >= ?", start), ("start <= ?", end), ("emitted_at > ?", since)):
        if val is not None:
            q += f" AND {cond}"
            p.append(val)
    store = ctx_of(request).store
    total = store.one(q.replace("SELECT *", "SELECT COUNT(*) n"), p)["n"]
    rows = store.all(q + " ORDER BY start LIMIT ? OFFSET ?", p + [page_size, (page - 1) * page_size])
    recs = [{"start": r["start"], "end": r["end"], "text": r["text"], "engine": r["engine"],
             "word_timestamps": (dec(r["data"], {}) or {}).get("words")} for r in rows]
    return ok({"transcription_records": recs, "total_count": total, "page": page, "page_size": page_size,
               "next_page": page + 1 if page * page_size < total else None})


# ---------------------------------------------------------------- indexes
@router.post("/rtstream/{rid}/index/scene")
def create_index(rid: str, body: IndexRequest, request: Request, _: Principal = Depends(admin)):
    r = rts_row(request, rid)
    et = body.extraction_type or "time"
    if r["channel_id"] == KERNEL:
        raise bad_request("the kernel stream holds cell executions, not media: search it (rtstream.search) or "
                          "read its events (session.events_df()); index_audio/index_visuals need a mic, "
                          "system_audio or screen stream", "NOT_MEDIA")
    is_audio = r["channel_id"] != "screen"
    _require_ai(request, "stt" if is_audio else "ocr", what="An audio index" if is_audio else "A visual index")
    if et == "transcript" and not is_audio:
        raise bad_request("index_audio needs an audio stream (mic or system_audio)", "NOT_AUDIO")
    if et in ("time", "shot") and is_audio:
        raise bad_request("index_visuals needs a screen stream", "NOT_VIDEO")
    cfg = body.extraction_config or ({"time": 2, "frame_count": 1} if et != "transcript" else
                                     {"segmenter": "word", "segmentation_value": 10})
    iid = new_id("idx")
    mc = dict(body.model_config_ or {})
    from .pipelines.indexer import engine_name, llm_engine  # the engine that answers is named in every event
    try:
        mc.setdefault("engine", engine_name(llm_engine()))
    except Exception as e:
        raise APIError(400, f"no LLM engine is available for prompt-driven indexes: {e}", "AI_UNAVAILABLE") from None
    ctx = ctx_of(request)
    start_seq = ctx.pipelines.index_start_seq(r) if not is_audio else None
    ctx.store.insert("scene_indexes", {
        "id": iid, "rtstream_id": rid, "collection_id": r["collection_id"], "extraction_type": et,
        "extraction_config": cfg, "prompt": body.prompt or ("Describe what is on the screen" if not is_audio else
                                                            "Summarise what was said"),
        "model_name": body.model_name, "model_config": mc, "name": body.name or
        ("audio index" if is_audio else "visual index"), "status": "connected",
        "ws_connection_id": body.ws_connection_id, "created_at": now(), "cursor": start_seq})
    if is_audio and not ctx.pipelines.session_live(r):
        ctx.pipelines.reindex_audio(ctx.store.one("SELECT * FROM scene_indexes WHERE id=?", (iid,)), r)
    _poke(request)
    return ok(index_dict(index_row(request, rid, iid)))


@router.get("/rtstream/{rid}/index/scene")
def list_indexes(rid: str, request: Request, p: Principal = Depends(reader)):
    rts_row(request, rid, p)
    rows = ctx_of(request).store.all("SELECT * FROM scene_indexes WHERE rtstream_id=? ORDER BY created_at", (rid,))
    return ok({"scene_indexes": [index_dict(r) for r in rows]})


@router.get("/rtstream/{rid}/index/scene/{idx}")
def get_scenes(rid: str, idx: str, request: Request, page: int = Query(1, ge=1, le=MAX_PAGE),
               page_size: int = Query(100, ge=1, le=1000), start: float | None = epoch_q(), end: float | None = epoch_q(),
               _: Principal = Depends(admin)):
    index_row(request, rid, idx)
    q, p = "SELECT * FROM events WHERE index_id=? AND channel IN (?,?)", [idx, AUDIO_INDEX, VISUAL_INDEX]
    if start is not None and end is not None:
        q += " AND \"end\" >= ? AND start <= ?"
        p += [start, end]
    rows = ctx_of(request).store.all(q + " ORDER BY start LIMIT ? OFFSET ?", p + [page_size + 1,
                                                                                 (page - 1) * page_size])
    more = len(rows) > page_size
    recs = [{"start": r["start"], "end": r["end"], "description": r["text"], "text": r["text"],
             "engine": r["engine"], "metadata": dec(r["data"], {})} for r in rows[:page_size]]
    return ok({"scene_index_records": recs, "next_page": page + 1 if more else None})


@router.patch("/rtstream/{rid}/index/scene/{idx}/status")
def index_status(rid: str, idx: str, body: Action, request: Request, _: Principal = Depends(admin)):
    index_row(request, rid, idx)
    action = body.action or {"started": "start", "stopped": "stop"}.get(body.status or "")
    if action not in ("start", "stop"):
        raise bad_request("action must be 'start' or 'stop'")
    ctx_of(request).store.update("scene_indexes", "id", idx, status="connected" if action == "start" else "stopped")
    _poke(request)
    return ok({})


@router.get("/rtstream/{rid}/index/{idx}")
def get_index(rid: str, idx: str, request: Request, _: Principal = Depends(admin)):
    return ok(index_dict(index_row(request, rid, idx)))


# ---------------------------------------------------------------- alerts
@router.post("/rtstream/{rid}/index/{idx}/alert")
def create_alert(rid: str, idx: str, body: AlertRequest, request: Request, _: Principal = Depends(admin)):
    index_row(request, rid, idx)
    ctx = ctx_of(request)
    if not ctx.store.one("SELECT id FROM rt_events WHERE id=?", (body.event_id,)):
        raise not_found("event", body.event_id)
    aid = new_id("alrt")
    ctx.store.insert("alerts", {"id": aid, "index_id": idx, "rtstream_id": rid, "event_id": body.event_id,
                                "callback_url": body.callback_url, "ws_connection_id": body.ws_connection_id,
                                "status": "enabled", "created_at": now()})
    _poke(request)
    return ok({"alert_id": aid})


@router.get("/rtstream/{rid}/index/{idx}/alert")
def list_alerts(rid: str, idx: str, request: Request, _: Principal = Depends(admin)):
    index_row(request, rid, idx)
    rows = ctx_of(request).store.all(
        "SELECT a.*, e.event_prompt, e.label FROM alerts a LEFT JOIN rt_events e ON e.id=a.event_id "
        "WHERE a.index_id=? ORDER BY a.created_at", (idx,))
    return ok({"alerts": [{"alert_id": r["id"], "event_id": r["event_id"], "prompt": r["event_prompt"],
                           "label": r["label"], "callback_url": r["callback_url"], "status": r["status"]}
                          for r in rows]})


@router.patch("/rtstream/{rid}/index/{idx}/alert/{aid}/status")
def alert_status(rid: str, idx: str, aid: str, body: Action, request: Request, _: Principal = Depends(admin)):
    index_row(request, rid, idx)
    ctx = ctx_of(request)
    if not ctx.store.one("SELECT id FROM alerts WHERE id=? AND index_id=?", (aid, idx)):
        raise not_found("alert", aid)
    status = {"enable": "enabled", "disable": "disabled"}.get(body.action or "") or body.status
    if status not in ("enabled", "disabled"):
        raise bad_request("send {action: 'enable'|'disable'} or {status: 'enabled'|'disabled'}")
    ctx.store.update("alerts", "id", aid, status=status)
    return ok({"alert_id": aid, "status": status})


# ---------------------------------------------------------------- search
def _search(request: Request, body: SearchRequest, collection_id: str, rtstream_id: str | None = None) -> list:
    ctx = ctx_of(request)
    _need("embeddings", what="Search")
    index = ctx.search_index()
    f = body.filter or SearchFilter()
    kinds = f.kind or f.kinds or f.type
    chans = f.channel_id or f.channel
    if f.rtstream_id and rtstream_id and f.rtstream_id != rtstream_id:
        return []
    hits = index.search(body.query, collection_id=collection_id, rtstream_id=rtstream_id or f.rtstream_id,
                        session_id=f.session_id, index_id=body.scene_index_id or body.index_id,
                        kinds=[kinds] if isinstance(kinds, str) else kinds,
                        channel_ids=[chans] if isinstance(chans, str) else chans,
                        start=f.start, end=f.end, limit=body.result_threshold or 10,
                        score_threshold=body.score_threshold)
    if body.dynamic_score_percentage and hits:
        top = hits[0].score
        hits = [h for h in hits if h.score >= top * (1 - body.dynamic_score_percentage / 100.0)]
    base = base_url(request)
    out = []
    for h in hits:
        s, e = float(h.start), float(max(h.end, h.start + 1))
        path = f"/media/rtstream/{h.rtstream_id}/clip.mp4"
        q = f"start={s:.3f}&end={e:.3f}"
        out.append({"rtstream_id": h.rtstream_id, "rtstream_name": h.rtstream_name, "session_id": h.session_id,
                    "channel_id": h.channel_id, "kind": h.kind, "start": h.start, "end": h.end, "text": h.text,
                    "score": round(float(h.score), 6), "scene_index_id": h.index_id,
                    "scene_index_name": (h.metadata or {}).get("index_name"), "metadata": h.metadata or {},
                    "stream_url": f"{base}{path}?{q}&{ctx.sign(path + '?' + q)}"})
    return out


@router.post("/rtstream/{rid}/search")
def rtstream_search(rid: str, body: SearchRequest, request: Request, p: Principal = Depends(reader)):
    r = rts_row(request, rid, p)
    return ok({"results": _search(request, body, r["collection_id"], rtstream_id=rid)})


# ---------------------------------------------------------------- clips and exports
@router.get("/rtstream/{rid}/stream")
def generate_stream(rid: str, request: Request, start: float = Query(..., gt=0, le=MAX_EPOCH_S), end: float = Query(..., gt=0, le=MAX_EPOCH_S),
                    p: Principal = Depends(reader)):
    r = rts_row(request, rid, p)
    if end < start:
        raise bad_request("end must not be before start (both epoch seconds)")
    if end - start < 1:
        end = start + 1  # the SDK truncates to whole seconds: a sub-second hit plays its second
    if end - start > 6 * 3600:
        raise bad_request("a clip can span at most 6 hours; export the session for longer media")
    ctx = ctx_of(request)
    base = base_url(request)
    path = f"/media/rtstream/{rid}/clip.mp4"
    q = f"start={start:.3f}&end={end:.3f}"
    ppath = f"/player/rtstream/{rid}"
    return ok({"stream_url": f"{base}{path}?{q}&{ctx.sign(path + '?' + q)}",
               "player_url": f"{base}{ppath}?{q}&{ctx.sign(ppath + '?' + q)}", "rtstream_id": r["id"]})


@router.post("/rtstream/{rid}/export")
def export_stream(rid: str, request: Request, body: RTStreamExport | None = None, _: Principal = Depends(admin)):
    from .exports import export_rtstream
    return ok(export_rtstream(ctx_of(request), rts_row(request, rid), body.name if body else None,
                              base_url(request)))


def _check_sig(request: Request, path: str, signed: str) -> None:
    try:
        exp = int(request.query_params.get("exp", "0"))
    except ValueError:
        exp = 0
    if not ctx_of(request).verify(signed, exp, request.query_params.get("sig", "")):
        raise APIError(401, "media URL signature invalid or expired: generate a new one "
                       "(rtstream.generate_stream or shot.generate_stream)", "INVALID_SIGNATURE")


@router.get("/media/rtstream/{rid}/clip.mp4", include_in_schema=False)
def clip_file(rid: str, request: Request, start: float = Query(..., ge=-MAX_EPOCH_S, le=MAX_EPOCH_S), end: float = Query(..., ge=-MAX_EPOCH_S, le=MAX_EPOCH_S)):
    path = f"/media/rtstream/{rid}/clip.mp4"
    _check_sig(request, path, f"{path}?start={start:.3f}&end={end:.3f}")
    from .exports import clip_key
    ctx = ctx_of(request)
    return ctx.media.response(clip_key(ctx, rts_row(request, rid), start, end), "video/mp4")


@router.get("/media/export/{sid}/{name}", include_in_schema=False)
def export_sidecar(sid: str, name: str, request: Request):
    """A JSON-lines file written beside a session's exported media (the kernel's cells), signed like media."""
    path = f"/media/export/{sid}/{name}"
    _check_sig(request, path, path)
    from .exports import sidecar_key
    ctx = ctx_of(request)
    return ctx.media.response(sidecar_key(ctx, sid, name), "application/x-ndjson")


@router.get("/media/video/{vid}.mp4", include_in_schema=False)
def video_file(vid: str, request: Request):
    path = f"/media/video/{vid}.mp4"
    _check_sig(request, path, path)
    ctx = ctx_of(request)
    v = ctx.store.one("SELECT * FROM videos WHERE id=?", (vid,))
    if not v or ctx.media.size(v["path"]) is None:
        raise not_found("video", vid)
    return ctx.media.response(v["path"], "video/mp4")


@router.get("/player/video/{vid}", include_in_schema=False)
def video_player(vid: str, request: Request):
    _check_sig(request, f"/player/video/{vid}", f"/player/video/{vid}")
    src = f"/media/video/{vid}.mp4?{ctx_of(request).sign(f'/media/video/{vid}.mp4')}"
    return HTMLResponse(_player(vid, src))


@router.get("/player/rtstream/{rid}", include_in_schema=False)
def clip_player(rid: str, request: Request, start: float = Query(..., ge=-MAX_EPOCH_S, le=MAX_EPOCH_S), end: float = Query(..., ge=-MAX_EPOCH_S, le=MAX_EPOCH_S)):
    q = f"start={start:.3f}&end={end:.3f}"
    _check_sig(request, f"/player/rtstream/{rid}", f"/player/rtstream/{rid}?{q}")
    path = f"/media/rtstream/{rid}/clip.mp4"
    return HTMLResponse(_player(rid, f"{path}?{q}&{ctx_of(request).sign(path + '?' + q)}"))


def _player(title: str, src: str) -> str:
    return (f"<!doctype html><title>{html.escape(title)}</title><body style='margin:0;background:#111'>"
            f"<video src='{html.escape(src)}' controls autoplay style='width:100%;max-height:100vh'></video>")
