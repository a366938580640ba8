"""Fragment ingest: validate, store durably (the media store: fsync'd file or S3 object) before acknowledging,
deduplicate, index, notify."""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cells import KIND as CELL_KIND
from ..events import KERNEL, SCREEN
from ..media.check import check_media
from ..media.fragments import Fragment, FragmentError, unpack
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

    def _lock(self, rtstream_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(rtstream_id, threading.Lock())

    def acked(self, session_id: str) -> dict[str, int]:
        return {s["source_channel_id"]: s["last_seq"] for s in self.sessions.rtstreams(session_id)}

    def stream_for(self, session_id: str, channel_id: str) -> dict:
        s = self.store.one("SELECT * FROM rtstreams WHERE session_id=? AND source_channel_id=?",
                           (session_id, channel_id))
        if not s:
            raise IngestError("UNKNOWN_CHANNEL", f"channel {channel_id!r} was not started in session {session_id}; "
                              "start it with capture/session/start first")
        return s

    def accept(self, session_id: str, buf: bytes) -> tuple[Fragment, bool]:
        """Store one fragment message. Returns (fragment, duplicate). Blocking (file I/O): run in a thread."""
        try:
            frag = unpack(buf)
        except FragmentError as e:
            raise IngestError(e.code, e.message) from None
        sess = self.sessions.row(session_id)
        s = self.stream_for(session_id, frag.channel_id)
        # exports and the AI place media on the wall clock from first to last fragment: one fragment with
        # absurd times would make every export of the session allocate (and fail on) days of samples
        longest = MAX_CELL_S if frag.kind == CELL_KIND else MAX_FRAGMENT_S
        if frag.t1 - frag.t0 > longest:
            raise IngestError("BAD_TIMES", f"fragment {frag.channel_id}#{frag.seq} claims {frag.t1 - frag.t0:.0f} s "
                              f"of media; a fragment covers at most {longest:.0f} s")
        if frag.t0 < (sess["created_at"] or 0) - CLOCK_SLACK_S or frag.t1 > now() + CLOCK_SLACK_S:
            raise IngestError("BAD_TIMES", f"fragment {frag.channel_id}#{frag.seq} is stamped {frag.t0:.3f}, "
                              f"outside this session (created {sess['created_at']:.0f}, now {now():.0f}); "
                              "t0/t1 must be epoch seconds on the capture clock")
        try:
            check_cell(frag) if frag.kind == CELL_KIND else check_media(frag)
        except FragmentError as e:
            raise IngestError(e.code, e.message) from None
        with self._lock(s["id"]):
            if self.store.one("SELECT 1 FROM fragments WHERE rtstream_id=? AND seq=?", (s["id"], frag.seq)):
                return frag, True
            if sess["status"] == STOPPED and self.sessions.resume_if_lost(session_id):
                sess = self.sessions.row(session_id)
            late = (sess["status"] == STOPPED and sess["stopped_at"] is not None
                    and frag.t0 <= sess["stopped_at"] + LATE_GRACE_S)
            if sess["status"] not in ACCEPTING and not late:
                raise IngestError("SESSION_NOT_RECORDING", f"session {session_id} is {sess['status']}; fragments "
                                  "are accepted while it is starting, active or stopping, and after it stopped "
                                  "only for media captured before the stop", 409)
            expected = {SCREEN: "video", KERNEL: CELL_KIND}.get(s["channel_id"], "audio")
            if frag.kind != expected:
                raise IngestError("BAD_KIND", f"channel {frag.channel_id} carries {expected}, not {frag.kind}")
            rel = f"{session_id}/{s['id']}/{frag.seq:08d}.frag"
            try:
                self.media.put(MEDIA_PREFIX + rel, buf)
            except MediaError as e:
                raise IngestError(e.code, f"{e.message} — the recorder keeps the fragment and resends it",
                                  507) from None
            t = now()
            with self.store.transaction():
                if not self.store.insert("fragments", {"rtstream_id": s["id"], "seq": frag.seq, "t0": frag.t0,
                                                       "t1": frag.t1, "size": len(buf), "path": rel,
                                                       "received_at": t}, ignore=True):
                    return frag, True  # another replica stored it meanwhile (a resend raced the original)
                # rows locked in the order every writer uses (session, then its streams): no deadlock
                self.store.execute("UPDATE sessions SET last_media_at=? WHERE id=?", (t, session_id))
                # the contiguous high-water mark, read under the row lock (replicas may ingest one stream)
                s = self.store.one("SELECT * FROM rtstreams WHERE id=?" + self.store.for_update, (s["id"],))
                last = s["last_seq"]
                while self.store.one("SELECT 1 AS x FROM fragments WHERE rtstream_id=? AND seq=?",
                                     (s["id"], last + 1)):
                    last += 1
                first_t = min(s["first_t"] or frag.t0, frag.t0)
                last_t = max(s["last_t"] or frag.t1, frag.t1)
                info = s["codec_info"] or json.dumps({"codec": frag.codec, **frag.codec_info})
                self.store.execute("UPDATE rtstreams SET last_seq=?, first_t=?, last_t=?, codec_info=? WHERE id=?",
                                   (last, first_t, last_t, info, s["id"]))
        if sess["status"] == STARTING:
            try:
                self.sessions.transition(session_id, ACTIVE)
            except Exception:  # a concurrent fragment already activated it
                pass
        s = self.store.one("SELECT * FROM rtstreams WHERE id=?", (s["id"],))
        if self.notifier is not None:
            self.notifier.poke("fragment", s["id"])
        for fn in list(self.listeners):
            try:
                fn(s, frag)
            except Exception:
                log.exception("fragment listener failed")
        return frag, False

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
