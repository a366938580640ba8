"""Exports and clips: fragments → MP4 (H.264 copied, audio mixed), in a background thread with progress."""
from __future__ import annotations

import hashlib
import logging
import os
import threading

from ..events import AUDIO_CATEGORIES, KERNEL, new_id
from ..private_fs import tighten
from .errors import APIError, conflict
from .media_store import FileMediaStore
from .kernel import EXPORT_NAME, export_cells
from .sessions import EXPORTED, STOPPED
from .store import dec, now

log = logging.getLogger("vdbnb.server.exports")
_jobs: dict[str, dict] = {}
EXPORT_CLAIM_S = 600.0
_jobs_lock = threading.Lock()


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
        raise APIError(404, "no media was stored in that time range", "NO_MEDIA")
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


def _run_export(ctx, session: dict, video_channel_id: str | None, base: str, job: dict) -> None:
    sid = session["id"]
    try:
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
                job["progress"] = (i + max(0.0, min(1.0, f))) / len(parts)
            rid = (v or (al[0] if al else None) or {}).get("id")
            try:
                vid = new_id("m") if (kind == "main" or v) else new_id("a")
                path = f"exports/{sid}/{vid}.mp4"
                summary = mux(ctx, path, v, al, progress=prog)
            except APIError:
                continue  # a channel with no media has no asset
            name = f"{session['end_user_id'] or 'capture'} {sid}" if kind == "main" else f"{rid} ({sid})"
            _add_video(ctx, vid, session, None if kind == "main" else rid, kind, path, summary, name)
            if kind == "main":
                main_id = vid
            elif rid:
                ctx.store.update("rtstreams", "id", rid, exported_video_id=vid)
        if not main_id:
            raise APIError(404, "nothing was recorded in this session", "NO_MEDIA")
        urls = video_urls(ctx, base, main_id)
        write_sidecars(ctx, session)
        sidecars = exported_sidecars(ctx, base, session)
        ctx.store.update("sessions", "id", sid, exported_video_id=main_id, export_status="exported")
        ctx.sessions.transition(sid, EXPORTED, data={"exported_video_id": main_id, **urls,
                                                     "assets": {s["source_channel_id"]: s["exported_video_id"]
                                                                for s in ctx.sessions.rtstreams(sid)
                                                                if s["channel_id"] != KERNEL},
                                                     "sidecars": sidecars})
        job.update(export_status="exported", video_id=main_id, progress=1.0, sidecars=sidecars, **urls)
    except Exception as e:
        log.exception("export of %s failed", sid)
        ctx.store.update("sessions", "id", sid, export_status="failed", error=f"export failed: {e}")
        job.update(export_status="failed", error=str(getattr(e, "message", e)))


def request_session_export(ctx, session: dict, video_channel_id: str | None, base: str) -> dict:
    """Start (or report on) the export of a stopped session; meant to be called repeatedly."""
    sid = session["id"]
    if session["status"] not in (STOPPED, EXPORTED):
        raise conflict(f"capture session {sid} is {session['status']!r}: stop it before exporting "
                       "(CaptureClient.stop_session(), or POST capture/session/{id}/stop).")
    with _jobs_lock:
        job = _jobs.get(sid)
        if session["export_status"] == "exported" and session["exported_video_id"] and not video_channel_id:
            return {"session_id": sid, "video_channel_id": session["primary_video_channel_id"],
                    "export_status": "exported", "video_id": session["exported_video_id"], "progress": 1.0,
                    "sidecars": exported_sidecars(ctx, base, session),
                    **video_urls(ctx, base, session["exported_video_id"])}
        if job and job["export_status"] == "exporting":
            return dict(job)
        job = {"session_id": sid, "video_channel_id": video_channel_id or session["primary_video_channel_id"],
               "export_status": "exporting", "progress": 0.0}
        # claimed in the store: of several replicas asked (a load balancer spreads the polls), one exports;
        # a claim older than EXPORT_CLAIM_S (its replica died) may be taken over
        t = now()
        claimed = ctx.store.execute(
            "UPDATE sessions SET export_status='exporting', updated_at=? WHERE id=? AND (export_status IS NULL "
            "OR export_status!='exporting' OR updated_at < ?)", (t, sid, t - EXPORT_CLAIM_S)).rowcount
        if not claimed:
            return job  # another replica is exporting it: ask again
        _jobs[sid] = job
    threading.Thread(target=_run_export, args=(ctx, session, video_channel_id, base, job), daemon=True,
                     name=f"export-{sid}").start()
    return dict(job)


def export_rtstream(ctx, rts: dict, name: str | None, base: str) -> dict:
    if rts["exported_video_id"]:
        v = ctx.store.one("SELECT * FROM videos WHERE id=?", (rts["exported_video_id"],))
        if v:
            return {"video_id": v["id"], "name": v["name"], "duration": v["duration"],
                    **video_urls(ctx, base, v["id"])}
    if rts["status"] != "stopped":
        raise conflict(f"rtstream {rts['id']} is {rts['status']!r}: stop it first (rtstream.stop()).")
    session = ctx.sessions.row(rts["session_id"])
    is_video = rts["channel_id"] == "screen"
    vid = new_id("m" if is_video else "a")
    path = f"exports/{rts['session_id'] or 'streams'}/{vid}.mp4"
    summary = mux(ctx, path, rts if is_video else None, [] if is_video else [rts])
    _add_video(ctx, vid, session, rts["id"], "asset", path, summary, name or rts["name"])
    ctx.store.update("rtstreams", "id", rts["id"], exported_video_id=vid)
    return {"video_id": vid, "name": name or rts["name"], "duration": summary.get("duration"),
            **video_urls(ctx, base, vid)}


def clip_key(ctx, rts: dict, start: float, end: float) -> str:
    """An MP4 of [start, end] for this stream: the stream's display (or the session's primary display for
    audio streams) with the session's audio mixed in. Cached in the media store (its key is returned)."""
    videos, audios = _streams(ctx, rts["session_id"])
    video = rts if rts["channel_id"] == "screen" else next((v for v in videos if v["is_primary"]),
                                                           videos[0] if videos else None)
    h = hashlib.sha256(f"{rts['id']}|{start:.3f}|{end:.3f}|{rts['last_seq']}".encode()).hexdigest()[:24]
    key = f"clips/{rts['id']}/{h}.mp4"  # per stream: deleted with its session
    if ctx.media.size(key) is None:
        mux(ctx, key, video, audios, start=start, end=end)
    elif isinstance(ctx.media, FileMediaStore):
        os.utime(ctx.media.path(key))  # in use: the retention pass purges clips nobody asked for in an hour
    return key


def export_running(session_id: str) -> bool:
    with _jobs_lock:
        job = _jobs.get(session_id)
        return bool(job) and job.get("export_status") == "exporting"


def session_channels(ctx, sid: str) -> list[dict]:
    return dec(ctx.sessions.row(sid)["channels"], [])
