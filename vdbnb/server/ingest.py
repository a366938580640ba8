"""Fragment ingest: validate, store durably (the media store: fsync'd file or S3 object) before acknowledging,
deduplicate, index, notify."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cells import KIND as CELL_KIND
from ..events import KERNEL, SCREEN
from ..media.check import check_media
from ..media.fragments import Fragment, FragmentError, unpack
from .errors import not_found
from .kernel import check_cell
from .media_store import FileMediaStore, MediaError, MediaStore
from .sessions import ACTIVE, STARTING, STOPPED, STOPPING, Sessions
from .store import Store, now

log = logging.getLogger("vdbnb.server.ingest")
MEDIA_PREFIX = "media/"   # fragments.path is relative to it
ACCEPTING = (STARTING, ACTIVE, STOPPING)
LATE_GRACE_S = 5.0  # a stopped session still takes media captured before its stop (a spool drained late)
MAX_FRAGMENT_S = 60.0     # a video fragment is <= 2 s, an audio fragment <= 0.5 s: anything longer is not ours
MAX_CELL_S = 30 * 86400.0  # a cell fragment spans one cell's run, which may take days
CLOCK_SLACK_S = 3600.0    # recorder clock vs this server's clock
_IO = ThreadPoolExecutor(16, thread_name_prefix="vdbnb-put")  # media PUTs started ahead of the database read
# a stream's contiguous high-water mark: last_seq moves over the stored seqs that follow it without a gap
# (seq = last_seq + rank among the stored seqs above last_seq)
HIGH_WATER = (
    "UPDATE rtstreams SET last_seq = last_seq + (SELECT COUNT(*) FROM (SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) "
    "AS rn FROM fragments WHERE rtstream_id=? AND seq > (SELECT last_seq FROM rtstreams WHERE id=?)) f "
    "WHERE f.seq = (SELECT last_seq FROM rtstreams WHERE id=?) + f.rn), "
    "first_t = CASE WHEN first_t IS NULL OR first_t > ? THEN ? ELSE first_t END, "
    "last_t = CASE WHEN last_t IS NULL OR last_t < ? THEN ? ELSE last_t END, "
    "codec_info = COALESCE(codec_info, ?) WHERE id=? RETURNING *")


class IngestError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Ingest:
    def __init__(self, store: Store, sessions: Sessions, media: MediaStore | Path):
        self.store = store
        self.sessions = sessions
        self.media = media if isinstance(media, MediaStore) else FileMediaStore(Path(media).parent)
        self.listeners: list = []          # fn(rtstream_row, fragment) called after a fragment is stored
        self.connections: dict[str, int] = {}   # session_id -> open ingest websockets (this process)
        self.notifier = None                    # set by the context: pokes the workers of every process
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._known: dict[tuple[str, str], tuple] = {}  # (session, channel) -> (stream id, kind, created_at)

    def _lock(self, rtstream_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(rtstream_id, threading.Lock())

    def acked(self, session_id: str) -> dict[str, int]:
        return {s["source_channel_id"]: s["last_seq"] for s in self.sessions.rtstreams(session_id)}

    def accept(self, session_id: str, buf: bytes) -> tuple[Fragment, bool]:
        """Store one fragment message. Returns (fragment, duplicate). Blocking (file I/O): run in a thread.

        The database is asked twice: one read (the session, the stream, whether this seq is stored) and one
        write (:meth:`_record`: fragment row, session, stream high-water mark and the poke, as one transaction
        in one round trip). The media is stored between the two, so the row exists only once the bytes do;
        on S3 the PUT starts before the read when this process knows the stream (it overlaps the read)."""
        try:
            frag = unpack(buf)
        except FragmentError as e:
            raise IngestError(e.code, e.message) from None
        try:
            check_cell(frag) if frag.kind == CELL_KIND else check_media(frag)
            bad = None
        except FragmentError as e:
            bad = IngestError(e.code, e.message)   # said in its turn below (after the session's own errors)
        writes: list[list] = []  # this attempt's media writes: [key, PUT started early or None, recorded]
        known = self._known.get((session_id, frag.channel_id))
        if known and bad is None and self.media.early_writes and frag.kind == known[1] \
                and self._time_error(frag, known[2]) is None:
            rel = self._rel(session_id, known[0], frag, buf)
            writes.append([rel, _IO.submit(self._put, rel, buf), False])
        try:
            return self._accept(session_id, frag, buf, bad, writes)
        finally:
            for w in writes:  # a duplicate's or a rejected fragment's object: no row points at it
                self._discard(w)

    def _accept(self, session_id: str, frag: Fragment, buf: bytes, bad, writes: list) -> tuple[Fragment, bool]:
        r = self.store.one(
            "SELECT s.status, s.created_at, s.stopped_at, r.id AS rid, r.channel_id, f.path AS stored "
            "FROM sessions s LEFT JOIN rtstreams r ON r.session_id = s.id AND r.source_channel_id = ? "
            "LEFT JOIN fragments f ON f.rtstream_id = r.id AND f.seq = ? WHERE s.id = ?",
            (frag.channel_id, frag.seq, session_id))
        if r is None:
            raise not_found("capture session", session_id)
        if r["rid"] is None:
            raise IngestError("UNKNOWN_CHANNEL", f"channel {frag.channel_id!r} was not started in session "
                              f"{session_id}; start it with capture/session/start first")
        rid = r["rid"]
        expected = {SCREEN: "video", KERNEL: CELL_KIND}.get(r["channel_id"], "audio")
        if len(self._known) > 4096:
            self._known.clear()
        self._known[(session_id, frag.channel_id)] = (rid, expected, r["created_at"])
        err = self._time_error(frag, r["created_at"])
        if err:
            raise err
        if bad is not None:
            raise bad
        with self._lock(rid):
            if r["stored"] is not None:
                return frag, True
            status, stopped_at = r["status"], r["stopped_at"]
            if status == STOPPED and self.sessions.resume_if_lost(session_id):
                sess = self.sessions.row(session_id)
                status, stopped_at = sess["status"], sess["stopped_at"]
            late = status == STOPPED and stopped_at is not None and frag.t0 <= stopped_at + LATE_GRACE_S
            if status not in ACCEPTING and not late:
                raise IngestError("SESSION_NOT_RECORDING", f"session {session_id} is {status}; fragments "
                                  "are accepted while it is starting, active or stopping, and after it stopped "
                                  "only for media captured before the stop", 409)
            if frag.kind != expected:
                raise IngestError("BAD_KIND", f"channel {frag.channel_id} carries {expected}, not {frag.kind}")
            if writes:
                w = writes[0]
                w[1].result()
            else:
                w = [self._rel(session_id, rid, frag, buf), None, False]
                writes.append(w)
                self._put(w[0], buf)
            s, stored = self._record(session_id, rid, frag, len(buf), w[0])
            if stored != w[0]:
                return frag, True  # another replica stored it meanwhile (a resend raced the original)
            w[2] = True
        if status == STARTING:
            try:
                self.sessions.transition(session_id, ACTIVE)
            except Exception:  # a concurrent fragment already activated it
                pass
        if self.notifier is not None and self.notifier.poke_statement("fragment", rid) is None:
            self.notifier.poke("fragment", rid)
        for fn in list(self.listeners):
            try:
                fn(s, frag)
            except Exception:
                log.exception("fragment listener failed")
        return frag, False

    def _record(self, session_id: str, rid: str, frag: Fragment, size: int, rel: str) -> tuple[dict, str]:
        """The stored fragment's row, the session's media clock, the stream's contiguous high-water mark and
        the workers' poke: one transaction, one round trip. Returns (the stream row, the stored path: another
        one when this seq was stored meanwhile)."""
        t = now()
        info = json.dumps({"codec": frag.codec, **frag.codec_info})
        poke = self.notifier.poke_statement("fragment", rid) if self.notifier is not None else None
        # rows are locked in the order every writer uses (session, then its streams): no deadlock; the
        # high-water mark is computed by a statement that starts after the stream's row is locked, so it sees
        # every fragment committed before (replicas may ingest one stream)
        res = self.store.batch([
            ("INSERT INTO fragments (rtstream_id, seq, t0, t1, size, path, received_at) VALUES (?,?,?,?,?,?,?) "
             "ON CONFLICT DO NOTHING", (rid, frag.seq, frag.t0, frag.t1, size, rel, t)),
            ("UPDATE sessions SET last_media_at=? WHERE id=?", (t, session_id)),
            ("SELECT id FROM rtstreams WHERE id=?" + self.store.for_update, (rid,)),
            (HIGH_WATER, (rid, rid, rid, frag.t0, frag.t0, frag.t1, frag.t1, info, rid)),
            ("SELECT path FROM fragments WHERE rtstream_id=? AND seq=?", (rid, frag.seq)),
            *([poke] if poke else []),
        ])
        return res[3][0], res[4][0]["path"]

    def _time_error(self, frag: Fragment, created_at: float | None) -> IngestError | None:
        # exports and the AI place media on the wall clock from first to last fragment: one fragment with
        # absurd times would make every export of the session allocate (and fail on) days of samples
        longest = MAX_CELL_S if frag.kind == CELL_KIND else MAX_FRAGMENT_S
        if frag.t1 - frag.t0 > longest:
            return IngestError("BAD_TIMES", f"fragment {frag.channel_id}#{frag.seq} claims {frag.t1 - frag.t0:.0f} "
                               f"s of media; a fragment covers at most {longest:.0f} s")
        if frag.t0 < (created_at or 0) - CLOCK_SLACK_S or frag.t1 > now() + CLOCK_SLACK_S:
            return IngestError("BAD_TIMES", f"fragment {frag.channel_id}#{frag.seq} is stamped {frag.t0:.3f}, "
                               f"outside this session (created {created_at or 0:.0f}, now {now():.0f}); "
                               "t0/t1 must be epoch seconds on the capture clock")
        return None

    def _rel(self, session_id: str, rid: str, frag: Fragment, buf: bytes) -> str:
        """The fragment's key under ``media/``: ``<session>/<stream>/<seq>.frag``; with a media store that is
        written early (S3), ``<seq>-<hash of the bytes>-<nonce>.frag``: each attempt writes its own object, so
        an attempt that ends without its row (a duplicate, a rejection) removes what it wrote and nothing else."""
        tail = f"-{hashlib.sha256(buf).hexdigest()[:16]}-{secrets.token_hex(4)}" if self.media.early_writes else ""
        return f"{session_id}/{rid}/{frag.seq:08d}{tail}.frag"

    def _put(self, rel: str, buf: bytes) -> None:
        try:
            self.media.put(MEDIA_PREFIX + rel, buf)
        except MediaError as e:
            raise IngestError(e.code, f"{e.message} — the recorder keeps the fragment and resends it",
                              507) from None

    def _discard(self, w: list) -> None:
        """Remove one attempt's object that no row points at (only where keys are per attempt: on files the key
        is the seq's, which a stored row may use)."""
        if w[2] or not self.media.early_writes:
            return
        try:
            if w[1] is not None:
                w[1].result()  # never leave a PUT running behind the attempt
        except IngestError:
            pass  # not stored; a partial upload is not an object
        try:
            self.media.delete(MEDIA_PREFIX + w[0])
        except Exception as e:
            log.warning("could not remove the unreferenced media object %s: %s", w[0], e)

    def fragment_rows(self, rtstream_id: str, start: float | None = None, end: float | None = None) -> list[dict]:
        """The stored fragments (seq, path, size, t0, t1) overlapping [start, end] in seq order, with the one
        before ``start`` when the range begins in a gap (an unchanged screen is not re-sent: its last picture is
        still showing); for video, from the fragment holding the keyframe of the first one's GOP (its pictures
        are needed to decode the first frame shown)."""
        cols = "seq, path, size, t0, t1"
        q, p = f"SELECT {cols} FROM fragments WHERE rtstream_id=?", [rtstream_id]
        if start is not None:
            q += " AND t1 >= ?"
            p.append(start)
        if end is not None:
            q += " AND t0 <= ?"
            p.append(end)
        q += " ORDER BY seq"
        rows = self.store.all(q, p)
        if start is not None and rows and rows[0]["t0"] > start:
            rows = self.store.all(f"SELECT {cols} FROM fragments WHERE rtstream_id=? AND t0<=? "
                                  "AND seq<? ORDER BY seq DESC LIMIT 1", (rtstream_id, start, rows[0]["seq"])) + rows
        if rows and start is not None:
            rows = self.gop_before(rtstream_id, rows[0]) + rows
        return rows

    def gop_before(self, rtstream_id: str, row) -> list:
        """The stored fragments from the keyframe that opens ``row``'s GOP up to ``row`` (excluded); [] when
        ``row`` opens its own GOP (every audio fragment does)."""
        try:
            gop = unpack(self.fragment_bytes(row["path"])).gop_seq
        except (OSError, FragmentError):
            return []
        if gop is None:
            return []
        return self.store.all("SELECT seq, path, size, t0, t1 FROM fragments WHERE rtstream_id=? AND seq>=? AND "
                              "seq<? ORDER BY seq", (rtstream_id, gop, row["seq"]))

    def load_range(self, rtstream_id: str, first: int, last: int) -> list[Fragment]:
        """The stored fragments first..last (inclusive) that are there, in seq order."""
        rows = self.store.all("SELECT path FROM fragments WHERE rtstream_id=? AND seq>=? AND seq<=? ORDER BY seq",
                              (rtstream_id, first, last))
        return [unpack(self.fragment_bytes(r["path"])) for r in rows]

    def fragment_bytes(self, path: str) -> bytes:
        """The stored bytes of one fragment (``fragments.path``)."""
        return self.media.get(MEDIA_PREFIX + path)

    def fragment_sources(self, rtstream_id: str, start: float | None = None, end: float | None = None) -> list:
        """Local files of the stored fragments of a stream in [start, end] (see :meth:`fragment_rows`), in seq
        order, for the decoders and the muxer (which read them one at a time): the files themselves (file media
        store) or copies in the bounded scratch folder (S3, fetched in parallel)."""
        rows = self.fragment_rows(rtstream_id, start, end)
        if isinstance(self.media, FileMediaStore):
            return [self.media.path(MEDIA_PREFIX + r["path"]) for r in rows]
        with ThreadPoolExecutor(8, thread_name_prefix="vdbnb-fetch") as pool:
            return list(pool.map(lambda r: self.media.local_path(MEDIA_PREFIX + r["path"]), rows))
