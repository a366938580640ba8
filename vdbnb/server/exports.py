"""Exports and clips: fragments → MP4 (H.264 copied, audio mixed), stored in the media store.

The API side (:func:`request_session_export`, :func:`export_rtstream`, :func:`clip_key`) queues the work as
export jobs (jobs.py); the work itself (:func:`export_runners`) runs in a process that runs exports (role
``all``, or ``vdbnb worker``), with its progress in the job's row. Video ids are derived from the job, so a job
taken over after its runner died writes the same objects and rows again instead of new ones."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading

from ..events import AUDIO_CATEGORIES, KERNEL
from ..private_fs import tighten
from .errors import APIError, conflict
from .jobs import DONE, FAILED, JobFailed
from .media_store import FileMediaStore
from .kernel import EXPORT_NAME, export_cells
from .sessions import EXPORTED, STOPPED
from .store import dec, now

log = logging.getLogger("vdbnb.server.exports")
WAIT_S = 300.0  # a stream export or a clip (answered in the request) waits this long for its job


def _streams(ctx, session_id: str) -> tuple[list[dict], list[dict]]:
    streams = ctx.sessions.rtstreams(session_id)
    videos = [s for s in streams if s["channel_id"] == "screen"]
    audios = [s for s in streams if s["channel_id"] in AUDIO_CATEGORIES]   # not the kernel's cell stream
    return videos, audios


def mux(ctx, key: str, video: dict | None, audios: list[dict], start=None, end=None, progress=None) -> dict:
    """Mux the stored fragments into an MP4 and store it in the media store under ``key``."""
    from ..media.mux import mux_mp4
    vf = ctx.ingest.fragment_sources(video["id"], start, end) if video else None
    af = [ctx.ingest.fragment_sources(a["id"], start, end) for a in audios]
    af = [a for a in af if a]
    if not vf and not af:
        raise JobFailed("no media was stored in that time range")
    out = ctx.media.scratch(key)
    tmp = out.with_suffix(f".{threading.get_ident()}.part.mp4")
    summary = mux_mp4(tmp, vf or None, af, start=start, end=end, progress=progress)
    tighten(tmp)
    tmp.replace(out)
    ctx.media.put_file(key, out)
    return summary


def sidecar_url(ctx, base: str, session_id: str, name: str) -> str:
    path = f"/media/export/{session_id}/{name}"
    return f"{base}{path}?{ctx.sign(path)}"


def exported_sidecars(ctx, base: str, session: dict) -> list[dict]:
    """The JSON-lines files written beside a session's exported media (the kernel's cells), with signed URLs."""
    out = []
    for s in ctx.sessions.rtstreams(session["id"]):
        name = EXPORT_NAME.format(channel=s["source_channel_id"].replace(":", "-"))
        if s["channel_id"] == KERNEL and ctx.media.size(f"exports/{session['id']}/{name}") is not None:
            out.append({"channel_id": s["source_channel_id"], "rtstream_id": s["id"], "kind": "cell",
                        "name": name, "url": sidecar_url(ctx, base, session["id"], name)})
    return out


def sidecar_key(ctx, session_id: str, name: str) -> str:
    """The media-store key behind a sidecar URL (only names this module writes; nothing outside the export
    folder)."""
    import re
    if not re.fullmatch(r"kernel-[A-Za-z0-9_.\-]+\.jsonl", name) or not re.fullmatch(r"[A-Za-z0-9_\-]+", session_id):
        raise APIError(404, "no such export file", "NOT_FOUND")
    key = f"exports/{session_id}/{name}"
    if ctx.media.size(key) is None:
        raise APIError(404, "no such export file: export the session first", "NOT_FOUND")
    return key


def write_sidecars(ctx, session: dict) -> None:
    """The kernel's cells as JSON lines beside the exported media, in the media store."""
    sid = session["id"]
    out_dir = ctx.media.scratch(f"exports/{sid}/cells").parent  # files: the export folder itself
    export_cells(ctx, session, out_dir)
    for s in ctx.sessions.rtstreams(sid):
        name = EXPORT_NAME.format(channel=s["source_channel_id"].replace(":", "-"))
        if s["channel_id"] == KERNEL and (out_dir / name).is_file():
            ctx.media.put_file(f"exports/{sid}/{name}", out_dir / name)


def video_urls(ctx, base: str, video_id: str) -> dict:
    path = f"/media/video/{video_id}.mp4"
    return {"stream_url": f"{base}{path}?{ctx.sign(path)}", "player_url": f"{base}/player/video/{video_id}?"
            f"{ctx.sign(f'/player/video/{video_id}')}"}


def _add_video(ctx, vid: str, session: dict, rtstream_id: str | None, kind: str, key: str, summary: dict,
               name: str) -> None:
    ctx.store.upsert("videos", {"id": vid, "collection_id": session["collection_id"], "session_id": session["id"],
                                "rtstream_id": rtstream_id, "name": name, "kind": kind, "path": key,
                                "duration": summary.get("duration"), "start": summary.get("start"),
                                "end": summary.get("end"), "status": "ready", "created_at": now()}, key=("id",))


def job_video_id(job: dict, prefix: str, part: str) -> str:
    """The id of one video a job makes: the same for every attempt of the job (and its params)."""
    key = f"{job['id']}|{json.dumps(job['params'], sort_keys=True)}|{part}"
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _run_session(ctx, job: dict, progress) -> dict:
    sid = job["session_id"]
    session = ctx.sessions.row(sid)
    video_channel_id = job["params"].get("video_channel_id")
    videos, audios = _streams(ctx, sid)
    primary = None
    if video_channel_id:
        primary = next((v for v in videos if v["source_channel_id"] == video_channel_id), None)
    primary = primary or next((v for v in videos if v["is_primary"]), None) or (videos[0] if videos else None)
    parts = [("main", primary, audios)] + [("asset", s, []) for s in videos] + [("asset", None, [a])
                                                                               for a in audios]
    main_id = None
    for i, (kind, v, al) in enumerate(parts):
        def prog(f, i=i):
            progress((i + max(0.0, min(1.0, f))) / len(parts))
        rid = (v or (al[0] if al else None) or {}).get("id")
        vid = job_video_id(job, "m" if (kind == "main" or v) else "a", f"{kind}:{rid}")
        path = f"exports/{sid}/{vid}.mp4"
        try:
            summary = mux(ctx, path, v, al, progress=prog)
        except JobFailed:
            continue  # a channel with no media has no asset
        name = f"{session['end_user_id'] or 'capture'} {sid}" if kind == "main" else f"{rid} ({sid})"
        _add_video(ctx, vid, session, None if kind == "main" else rid, kind, path, summary, name)
        if kind == "main":
            main_id = vid
        elif rid:
            ctx.store.update("rtstreams", "id", rid, exported_video_id=vid)
    if not main_id:
        raise JobFailed("nothing was recorded in this session")
    write_sidecars(ctx, session)
    return {"video_id": main_id}


def _finish_session(ctx, job: dict) -> None:
    """The session's export state, and its ``exported`` event (with the asking replica's URLs), commit with
    the job's end."""
    sid = job["session_id"]
    if job["status"] == FAILED:
        ctx.store.update("sessions", "id", sid, export_status="failed", error=job["error"])
        return
    main_id = job["result"]["video_id"]
    base = job["base_url"] or ""
    ctx.store.update("sessions", "id", sid, exported_video_id=main_id, export_status="exported")
    session = ctx.sessions.row(sid)
    ctx.sessions.transition(sid, EXPORTED, data={"exported_video_id": main_id, **video_urls(ctx, base, main_id),
                                                 "assets": {s["source_channel_id"]: s["exported_video_id"]
                                                            for s in ctx.sessions.rtstreams(sid)
                                                            if s["channel_id"] != KERNEL},
                                                 "sidecars": exported_sidecars(ctx, base, session)})


def _run_rtstream(ctx, job: dict, progress) -> dict:
    rts = ctx.store.one("SELECT * FROM rtstreams WHERE id=?", (job["rtstream_id"],))
    if rts is None:
        raise JobFailed(f"rtstream {job['rtstream_id']} is gone", "NOT_FOUND")
    session = ctx.sessions.row(rts["session_id"])
    is_video = rts["channel_id"] == "screen"
    vid = job_video_id(job, "m" if is_video else "a", "stream")
    path = f"exports/{rts['session_id'] or 'streams'}/{vid}.mp4"
    name = job["params"].get("name") or rts["name"]
    summary = mux(ctx, path, rts if is_video else None, [] if is_video else [rts], progress=progress)
    _add_video(ctx, vid, session, rts["id"], "asset", path, summary, name)
    ctx.store.update("rtstreams", "id", rts["id"], exported_video_id=vid)
    return {"video_id": vid, "name": name, "duration": summary.get("duration")}


def _run_clip(ctx, job: dict, progress) -> dict:
    p = job["params"]
    rts = ctx.store.one("SELECT * FROM rtstreams WHERE id=?", (job["rtstream_id"],))
    if rts is None:
        raise JobFailed(f"rtstream {job['rtstream_id']} is gone", "NOT_FOUND")
    videos, audios = _streams(ctx, rts["session_id"])
    video = rts if rts["channel_id"] == "screen" else next((v for v in videos if v["is_primary"]),
                                                           videos[0] if videos else None)
    mux(ctx, p["key"], video, audios, start=p["start"], end=p["end"], progress=progress)
    return {"key": p["key"]}


def export_runners(ctx) -> dict:
    """The export work by job kind, for :class:`~vdbnb.server.jobs.Jobs`."""
    return {"session": (lambda job, progress: _run_session(ctx, job, progress), lambda job: _finish_session(ctx, job)),
            "rtstream": (lambda job, progress: _run_rtstream(ctx, job, progress), None),
            "clip": (lambda job, progress: _run_clip(ctx, job, progress), None)}


def _exported(ctx, base: str, session: dict, video_id: str) -> dict:
    return {"session_id": session["id"], "video_channel_id": session["primary_video_channel_id"],
            "export_status": "exported", "video_id": video_id, "progress": 1.0,
            "sidecars": exported_sidecars(ctx, base, session), **video_urls(ctx, base, video_id)}


def request_session_export(ctx, session: dict, video_channel_id: str | None, base: str) -> dict:
    """Start (or report on) the export of a stopped session; meant to be called repeatedly (any replica)."""
    sid = session["id"]
    if session["status"] not in (STOPPED, EXPORTED):
        raise conflict(f"capture session {sid} is {session['status']!r}: stop it before exporting "
                       "(CaptureClient.stop_session(), or POST capture/session/{id}/stop).")
    if session["export_status"] == "exported" and session["exported_video_id"] and not video_channel_id:
        return _exported(ctx, base, session, session["exported_video_id"])
    with ctx.store.transaction():
        job = ctx.jobs.submit(f"session:{sid}", "session", {"video_channel_id": video_channel_id}, session_id=sid,
                              base_url=base)
        if job["status"] not in (DONE, FAILED):
            ctx.store.update("sessions", "id", sid, export_status="exporting")
    view = {"session_id": sid, "video_channel_id": video_channel_id or session["primary_video_channel_id"]}
    if job["status"] == DONE:
        return {**_exported(ctx, base, ctx.sessions.row(sid), job["result"]["video_id"]), **view}
    if job["status"] == FAILED:
        return {**view, "export_status": "failed", "error": job["error"]}
    return {**view, "export_status": "exporting", "progress": job["progress"] or 0.0}


def _wait(ctx, job: dict, what: str) -> dict:
    """A job the request answers with: its result, or the error it ended with."""
    job = ctx.jobs.wait(job["id"], WAIT_S)
    if job["status"] == DONE:
        return job["result"]
    if job["status"] == FAILED:
        raise APIError(404 if job["error_code"] else 500, f"{what}: {job['error']}",
                       job["error_code"] or "EXPORT_FAILED")
    raise APIError(503, f"{what} is still {job['status']} after {WAIT_S:.0f}s: no process that runs exports took "
                   "it (start `vdbnb worker`, or run a replica with --role all); ask again later", "EXPORT_PENDING")


def export_rtstream(ctx, rts: dict, name: str | None, base: str) -> dict:
    if rts["exported_video_id"]:
        v = ctx.store.one("SELECT * FROM videos WHERE id=?", (rts["exported_video_id"],))
        if v:
            return {"video_id": v["id"], "name": v["name"], "duration": v["duration"],
                    **video_urls(ctx, base, v["id"])}
    if rts["status"] != "stopped":
        raise conflict(f"rtstream {rts['id']} is {rts['status']!r}: stop it first (rtstream.stop()).")
    job = ctx.jobs.submit(f"rtstream:{rts['id']}", "rtstream", {"name": name}, session_id=rts["session_id"],
                          rtstream_id=rts["id"], base_url=base)
    res = _wait(ctx, job, f"export of rtstream {rts['id']}")
    return {**res, **video_urls(ctx, base, res["video_id"])}


def clip_key(ctx, rts: dict, start: float, end: float) -> str:
    """An MP4 of [start, end] for this stream: the stream's display (or the session's primary display for
    audio streams) with the session's audio mixed in. Cached in the media store (its key is returned)."""
    h = hashlib.sha256(f"{rts['id']}|{start:.3f}|{end:.3f}|{rts['last_seq']}".encode()).hexdigest()[:24]
    key = f"clips/{rts['id']}/{h}.mp4"  # per stream: deleted with its session
    if ctx.media.size(key) is None:
        # redo: a clip job done earlier whose object the retention pass removed since runs again
        job = ctx.jobs.submit(f"clip:{h}", "clip", {"key": key, "start": start, "end": end},
                              session_id=rts["session_id"], rtstream_id=rts["id"], redo=True)
        _wait(ctx, job, f"clip of rtstream {rts['id']}")
    elif isinstance(ctx.media, FileMediaStore):
        os.utime(ctx.media.path(key))  # in use: the retention pass purges clips nobody asked for in an hour
    return key


def export_running(ctx, session_id: str) -> bool:
    """An export job of this session is queued or running (on any process sharing the store)."""
    return ctx.jobs.active(session_id)


def session_channels(ctx, sid: str) -> list[dict]:
    return dec(ctx.sessions.row(sid)["channels"], [])
