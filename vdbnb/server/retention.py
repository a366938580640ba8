"""Deleting what was captured, and letting what is spent expire.

``delete_session`` removes a capture session with everything derived from it: its RTStreams, stored fragments
(media files), events (transcripts, index results, alerts, cells), indexes and their alerts, pipeline cursors,
exported videos and their files, cached clips, search rows and their vectors, and undelivered or delivered
webhooks about it. SQLite runs with ``secure_delete`` (deleted rows are overwritten, not left in free pages),
the search index's full-text segments are merged so that no deleted term survives in them, deleted vector
rows are zeroed, and the WAL is checkpointed.

``purge`` runs at start and every ``PURGE_EVERY_S``: sessions older than ``retention_days`` (when set),
expired client and agent tokens, expired or used websocket tickets, delivered webhooks older than a day, and
cached clips nobody asked for in ``CLIP_TTL_S``.
"""
from __future__ import annotations

import asyncio
import logging

from .errors import conflict
from .ingest import MEDIA_PREFIX
from .sessions import ACTIVE, STARTING, STOPPING
from .store import now

log = logging.getLogger("vdbnb.server.retention")
PURGE_EVERY_S = 600.0
DELIVERED_KEEP_S = 86400.0
CLIP_TTL_S = 3600.0


def delete_session(ctx, session_id: str, collection_id: str | None = None) -> dict:
    """Delete one session and everything derived from it; returns what was removed (counts)."""
    r = ctx.sessions.row(session_id, collection_id)
    if r["status"] in (STARTING, ACTIVE, STOPPING):
        raise conflict(f"capture session {session_id} is {r['status']!r}: stop it before deleting it "
                       "(CaptureClient.stop_session(), or POST capture/session/{id}/stop).", "SESSION_RECORDING")
    from .exports import export_running
    if export_running(ctx, session_id):
        raise conflict(f"capture session {session_id} is being exported: delete it when the export ends.",
                       "EXPORT_RUNNING")
    st = ctx.store
    rts = [x["id"] for x in st.all("SELECT id FROM rtstreams WHERE session_id=?", (session_id,))]
    idx = [x["id"] for x in _in(st, "SELECT id FROM scene_indexes WHERE rtstream_id IN ({})", rts)]
    videos = st.all("SELECT id, path FROM videos WHERE session_id=? OR rtstream_id IN "
                    f"({','.join('?' * len(rts)) or 'NULL'})", [session_id, *rts])
    counts: dict[str, int] = {}
    with st.transaction() as tx:
        counts["events"] = tx.execute("DELETE FROM events WHERE session_id=?", (session_id,)).rowcount + \
            _del(tx, "events", "rtstream_id", rts)
        counts["alerts"] = _del(tx, "alerts", "index_id", idx) + _del(tx, "alerts", "rtstream_id", rts)
        counts["indexes"] = _del(tx, "scene_indexes", "id", idx)
        counts["fragments"] = _del(tx, "fragments", "rtstream_id", rts)
        _del(tx, "pipeline_cursors", "rtstream_id", rts)
        _del(tx, "stream_leases", "rtstream_id", rts)
        _del(tx, "index_batches", "rtstream_id", rts)  # final transcripts an audio index was collecting
        tx.execute("DELETE FROM export_jobs WHERE session_id=?", (session_id,))
        counts["videos"] = _del(tx, "videos", "id", [v["id"] for v in videos])
        counts["webhooks"] = tx.execute("DELETE FROM webhook_outbox WHERE session_id=?", (session_id,)).rowcount
        counts["rtstreams"] = tx.execute("DELETE FROM rtstreams WHERE session_id=?", (session_id,)).rowcount
        tx.execute("DELETE FROM ingest_links WHERE session_id=?", (session_id,))
        tx.execute("DELETE FROM sessions WHERE id=?", (session_id,))
    counts["search_rows"] = _forget_search(ctx, session_id)
    # media: the session's fragments, exports and cached clips, in the media store (files or S3)
    prefixes = [f"{MEDIA_PREFIX}{session_id}/", f"exports/{session_id}/"] + [f"clips/{rid}/" for rid in rts]
    counts["files"] = sum(ctx.media.delete_prefix(p) for p in prefixes)
    for v in videos:  # exports of single streams, or rows written by vdbnb <= 0.1 (absolute paths)
        if v["path"] and not any(v["path"].startswith(p) for p in prefixes):
            counts["files"] += int(ctx.media.size(v["path"]) is not None)
            ctx.media.delete(v["path"])
    if ctx.pipelines is not None:
        ctx.pipelines.forget(set(rts) | set(idx))
    _checkpoint(st)
    log.info("deleted capture session %s: %s", session_id, counts)
    return counts


def purge(ctx, at: float | None = None) -> dict:
    """One retention pass; returns what it removed."""
    t = now() if at is None else at
    st = ctx.store
    out: dict[str, int] = {}
    days = ctx.settings.retention_days
    if days:
        old = st.all("SELECT id FROM sessions WHERE status NOT IN (?,?,?) AND COALESCE(stopped_at, updated_at, "
                     "created_at) < ?", (STARTING, ACTIVE, STOPPING, t - days * 86400))
        n = 0
        for r in old:
            try:
                delete_session(ctx, r["id"])
                n += 1
            except Exception as e:  # noqa: BLE001 - an export running: the next pass takes it
                log.info("retention: %s kept for now (%s)", r["id"], getattr(e, "message", e))
        out["sessions"] = n
    out["client_tokens"] = st.execute("DELETE FROM client_tokens WHERE expires_at < ?", (t,)).rowcount
    out["ws_tickets"] = st.execute("DELETE FROM ws_tickets WHERE expires_at < ?", (t,)).rowcount
    out["webhooks"] = st.execute("DELETE FROM webhook_outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                                 (t - DELIVERED_KEEP_S,)).rowcount
    out["clips"] = ctx.media.delete_older("clips/", CLIP_TTL_S)
    if any(out.values()):
        _checkpoint(st)
        log.info("retention pass: %s", out)
    return out


async def purge_loop(ctx, every: float = PURGE_EVERY_S) -> None:
    while True:
        try:
            await asyncio.to_thread(purge, ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention pass failed; retrying at the next one")
        await asyncio.sleep(every)


# ------------------------------------------------------------------------------------------ helpers
def _in(st, sql: str, ids: list) -> list[dict]:
    return st.all(sql.format(",".join("?" * len(ids))), ids) if ids else []


def _del(tx, table: str, col: str, ids: list) -> int:
    if not ids:
        return 0
    return tx.execute(f"DELETE FROM {table} WHERE {col} IN ({','.join('?' * len(ids))})", ids).rowcount


def _forget_search(ctx, session_id: str) -> int:
    """Search rows and vectors of the session, compacted so that no deleted term or vector is left behind."""
    if ctx.store.dialect == "sqlite" and not (ctx.data_dir / "search.sqlite3").exists():
        return 0
    ix = ctx.search_index()
    n = ix.delete_where(session_id=session_id)
    if n:
        ix.compact()
    return n


def _checkpoint(st) -> None:
    if st.dialect != "sqlite":
        return  # PostgreSQL: autovacuum reclaims deleted rows
    try:
        st.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception:  # noqa: BLE001 - a reader holds the WAL: the next checkpoint takes it
        pass

