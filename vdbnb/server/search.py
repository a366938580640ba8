"""Hybrid search over time-windowed segments (what was said and shown): FTS5 BM25 + MiniLM cosine, fused.

    ix = SearchIndex(data_dir / "search.sqlite")
    ix.add([Doc("d1", "c-1", "ses-1", "rts-1", "mic", "mic", "transcript", None, t0, t0 + 4,
                "the budget meeting moves to Thursday", {})])
    ix.search("when is the finance review rescheduled", collection_id="c-1")   # -> [Hit(...)]

Storage: one SQLite file (WAL) of its own with a ``search_meta`` table holding the schema version. Each
segment row keeps its vector (float16). The vector files (vectors.py: a float16 matrix and 1-bit codes) are a
cache persisted beside it and rebuilt from SQLite when missing or corrupt; rows added after its last save are
replayed on open (row ids only grow: AUTOINCREMENT), rows deleted since are dropped when results are joined.

Ranking: the keyword leg runs FTS5 BM25 over a sanitised query (any user text is safe: every word becomes a
quoted FTS5 phrase, so quotes, operators and punctuation are inert). In hybrid mode it requires every content
word (AND) so that stray word overlaps do not outvote meaning; in keyword mode it falls back to OR. The
semantic leg ranks by cosine, exactly over the filtered rows when they are few; otherwise exactly over the
rows nearest by binary code (a Hamming scan of all rows), post-filtered. Hybrid fuses the two ranked lists by reciprocal rank fusion (k=60).

Scores are 0..1, higher is better: semantic = cosine clipped at 0; keyword = 61/(60+rank); hybrid =
RRF sum / the best possible RRF sum (1.0 = first in both legs, 0.5 = first in one leg only).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vdbnb.errors import SearchError

from .ranking import (_COLS, KEYWORD_SCAN_MAX, MODES, PREFILTER_MAX, Doc, Hit, _q, _where, fts_query, fuse,
                      merge_overlapping)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
AUTOSAVE_EVERY = 200_000  # flush the vector files after this many unsaved additions

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS search_meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL, session_id TEXT, rtstream_id TEXT, rtstream_name TEXT,
    channel_id TEXT, kind TEXT, index_id TEXT, start REAL, "end" REAL,
    text TEXT NOT NULL, metadata TEXT, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS segments_coll ON segments(collection_id, start);
CREATE INDEX IF NOT EXISTS segments_stream ON segments(rtstream_id, start);
CREATE INDEX IF NOT EXISTS segments_session ON segments(session_id, start);
CREATE INDEX IF NOT EXISTS segments_index ON segments(index_id);
CREATE INDEX IF NOT EXISTS segments_chan ON segments(collection_id, channel_id, kind);
CREATE INDEX IF NOT EXISTS segments_byid ON segments(id, collection_id, channel_id, kind, session_id, rtstream_id,
    index_id, start, "end");
CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5(
    text, content='segments', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS segments_ai AFTER INSERT ON segments BEGIN
    INSERT INTO segments_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS segments_ad AFTER DELETE ON segments BEGIN
    INSERT INTO segments_fts(segments_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
INSERT OR IGNORE INTO search_meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

def _f16(vecs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vecs, dtype=np.float16)


class SearchIndex:
    """Thread-safe hybrid search index stored in its own SQLite file (WAL) plus persisted vector files."""

    def __init__(self, path: Path | str, embedder=None, ann_threads: int = 2,
                 prefilter_max: int = PREFILTER_MAX, keyword_scan_max: int = KEYWORD_SCAN_MAX):
        from vdbnb.server.vectors import VectorIndex

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._embedder = embedder
        self.prefilter_max = prefilter_max
        self.keyword_scan_max = keyword_scan_max
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._write = threading.Lock()  # one writer at a time (SQLite + vector files stay in step)
        self._conns_lock = threading.Lock()
        self._closed = False
        self._legs = ThreadPoolExecutor(4, thread_name_prefix="vdbnb-search")
        self._unsaved = 0
        db = self._db()
        with self._write, db:
            db.executescript(_SCHEMA)
        version = int(db.execute("SELECT value FROM search_meta WHERE key='schema_version'").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise SearchError(f"{self.path} has search schema v{version}, this vdbnb reads v{SCHEMA_VERSION}: "
                              "delete the file to rebuild the index, or upgrade vdbnb")
        # the longest segment: lets a time filter bound `start` from below, so it can use an index
        if self._meta("max_duration") is None:
            with self._write, db:
                dur = db.execute('SELECT coalesce(max("end" - start), 0) FROM segments').fetchone()[0]
                db.execute("INSERT OR REPLACE INTO search_meta VALUES ('max_duration', ?)", (str(dur),))
        self._max_dur = float(self._meta("max_duration"))
        self.vectors = VectorIndex(self.path.with_name(self.path.name + ".ann"), threads=ann_threads)
        self.path.with_name(self.path.name + ".ann.usearch").unlink(missing_ok=True)  # graph of vdbnb <= 0.1
        self._sync_vectors()

    # ------------------------------------------------------------------------------------ plumbing
    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise SearchError("this SearchIndex is closed; open a new one")
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for pragma in ("busy_timeout=30000", "cache_size=-65536", "secure_delete=ON"):  # deleted text overwritten
                db.execute(f"PRAGMA {pragma}")
            self._local.db = db
            with self._conns_lock:
                self._conns.append(db)
        return db

    @property
    def embedder(self):
        if self._embedder is None:
            from vdbnb.ai.embed import get_embedder
            self._embedder = get_embedder()
        return self._embedder

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db().execute("SELECT value FROM search_meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def _sync_vectors(self) -> None:
        """Bring the vector files up to date with SQLite (after a crash, or when its file was lost)."""
        db = self._db()
        synced = int(self._meta("ann_max_id", "0")) if self.vectors.loaded else 0
        rows = db.execute("SELECT count(*), max(id) FROM segments WHERE id > ?", (synced,)).fetchone()
        if not rows[0]:
            return
        log.info("search: indexing %d vectors missing from %s", rows[0], self.vectors.path)
        cur = db.execute("SELECT id, vec FROM segments WHERE id > ? ORDER BY id", (synced,))
        while batch := cur.fetchmany(50_000):
            ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
            vecs = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float16).reshape(len(batch), -1)
            self.vectors.add(ids, vecs)
        self.flush()

    def flush(self) -> None:
        """Flush the vector files (also done by close()); rows added later are replayed from SQLite on open."""
        with self._write:
            max_id = self._db().execute("SELECT coalesce(max(id), 0) FROM segments").fetchone()[0]
            self.vectors.save()
            self._unsaved = 0
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO search_meta VALUES ('ann_max_id', ?)", (str(max_id),))

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        with self._write, self._conns_lock:
            for db in self._conns:
                try:
                    db.close()
                except sqlite3.ProgrammingError:  # created in another thread that is gone
                    pass
            self._conns.clear()
        self.vectors.close()
        self._legs.shutdown(wait=False)

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db().execute("SELECT count(*) FROM segments").fetchone()[0]

    # -------------------------------------------------------------------------------------- writes
    def add(self, docs: Sequence[Doc], vectors: np.ndarray | None = None, batch_size: int = 64) -> None:
        """Insert or replace (by doc_id) segments. Texts are embedded here unless ``vectors`` (n, 384) are given."""
        if not docs:
            return
        if vectors is None:
            vectors = self.embedder.embed([d.text for d in docs], batch_size=batch_size)
        if len(vectors) != len(docs):
            raise SearchError(f"add() got {len(docs)} docs but {len(vectors)} vectors: pass one vector per doc")
        last = {d.doc_id: i for i, d in enumerate(docs)}  # a doc_id repeated in one batch: the last wins
        if len(last) < len(docs):
            keep = sorted(last.values())
            docs, vectors = [docs[i] for i in keep], np.asarray(vectors)[keep]
        vecs = _f16(vectors)
        rows = [(d.doc_id, d.collection_id, d.session_id, d.rtstream_id, d.rtstream_name, d.channel_id,
                 d.kind, d.index_id, float(d.start), float(d.end), d.text or "",
                 json.dumps(d.metadata or {}, default=str), vecs[i].tobytes()) for i, d in enumerate(docs)]
        doc_ids = [d.doc_id for d in docs]
        with self._write, self._db() as db:
            old = self._ids_of(db, doc_ids)
            db.executemany("DELETE FROM segments WHERE doc_id=?", [(d,) for d in doc_ids])
            db.executemany(f"INSERT INTO segments({','.join(_q(c) for c in _COLS)}, vec) "
                           f"VALUES ({','.join('?' * (len(_COLS) + 1))})", rows)
            new = dict(self._ids_of(db, doc_ids, with_doc_id=True))
            self.vectors.remove(old)
            self.vectors.add(np.array([new[d] for d in doc_ids], dtype=np.int64), vecs)
            dur = max(float(d.end) - float(d.start) for d in docs)
            if dur > self._max_dur:
                db.execute("INSERT OR REPLACE INTO search_meta VALUES ('max_duration', ?)", (str(dur),))
                self._max_dur = dur
            self._unsaved += len(rows)
        if self._unsaved >= AUTOSAVE_EVERY:
            self.flush()

    def delete(self, doc_ids: Iterable[str]) -> int:
        """Delete segments by doc_id; returns how many were deleted."""
        doc_ids = list(doc_ids)
        with self._write, self._db() as db:
            ids = self._ids_of(db, doc_ids)
            db.executemany("DELETE FROM segments WHERE doc_id=?", [(d,) for d in doc_ids])
            self.vectors.remove(ids)
        return len(ids)

    def delete_where(self, *, collection_id: str | None = None, session_id: str | None = None,
                     rtstream_id: str | None = None, index_id: str | None = None) -> int:
        """Delete every segment matching all the given fields (at least one); returns how many."""
        where, args = _where(collection_id=collection_id, session_id=session_id, rtstream_id=rtstream_id,
                             index_id=index_id)
        if not args:
            raise SearchError("delete_where() needs at least one of collection_id, session_id, rtstream_id, "
                              "index_id; to drop everything delete the index file")
        with self._write, self._db() as db:
            ids = np.array([r[0] for r in db.execute(f"SELECT id FROM segments WHERE {where}", args)],
                           dtype=np.int64)
            db.execute(f"DELETE FROM segments WHERE {where}", args)
            self.vectors.remove(ids)
        return len(ids)

    def compact(self) -> None:
        """After a delete: FTS5 keeps deleted terms in old segments until they are merged; the zeroed vector
        rows reach the files, and the WAL is checkpointed."""
        with self._write, self._db() as db:
            db.execute("INSERT INTO segments_fts(segments_fts) VALUES ('optimize')")
        self.flush()
        with self._write:  # and the WAL frames that held the deleted text go
            try:
                self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:  # a reader holds the WAL: the next checkpoint takes it
                pass

    @staticmethod
    def _ids_of(db: sqlite3.Connection, doc_ids: list[str], with_doc_id: bool = False):
        out: list = []
        for i in range(0, len(doc_ids), 900):
            part = doc_ids[i:i + 900]
            out += db.execute(f"SELECT id, doc_id FROM segments WHERE doc_id IN ({','.join('?' * len(part))})",
                              part).fetchall()
        return [(d, i) for i, d in out] if with_doc_id else np.array([r[0] for r in out], dtype=np.int64)

    # -------------------------------------------------------------------------------------- search
    def search(self, query: str, collection_id: str, rtstream_id: str | None = None,
               session_id: str | None = None, index_id: str | None = None,
               kinds: Sequence[str] | None = None, channel_ids: Sequence[str] | None = None,
               start: float | None = None, end: float | None = None, limit: int = 10,
               score_threshold: float | None = None, mode: str = "hybrid",
               merge_adjacent: bool = False) -> list[Hit]:
        """Segments of ``collection_id`` matching ``query``, best first, filtered by every argument given
        (time: segments overlapping [start, end]). See the module docstring for modes and scores."""
        if mode not in MODES:
            raise SearchError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        query = (query or "").strip()
        limit = max(1, min(int(limit), 1000))
        if not query:
            return []
        where, args = _where(collection_id=collection_id, rtstream_id=rtstream_id, session_id=session_id,
                             index_id=index_id, kinds=kinds, channel_ids=channel_ids, start=start, end=end,
                             max_duration=self._max_dur)
        depth = max(limit * 3, 30)
        db = self._db()
        passing = db.execute(f"SELECT count(*) FROM (SELECT 1 FROM segments WHERE {where} LIMIT ?)",
                             [*args, self.prefilter_max + 1]).fetchone()[0]
        if not passing:
            return []
        small = None  # few rows pass the filters: search exactly among them (pre-filter)
        if passing <= self.prefilter_max:
            small = [r[0] for r in db.execute(f"SELECT id FROM segments WHERE {where}", args)]
        keyword = None
        if mode != "semantic":  # the keyword leg runs beside the semantic one (SQLite and numpy free the GIL)
            if small:  # bound the FTS scan to the (time-ordered) id range of the rows that pass
                where_kw, args_kw = f"f.rowid BETWEEN ? AND ? AND {where}", [min(small), max(small), *args]
            else:
                where_kw, args_kw = where, args
            keyword = self._legs.submit(self._keyword, query, where_kw, args_kw, depth, mode == "keyword")
        semantic = self._semantic(query, where, args, depth, small) if mode != "keyword" else []
        order, final = fuse(semantic, keyword.result() if keyword is not None else [], mode, score_threshold)
        hits = self._hits(order[: limit * 3 if merge_adjacent else limit], final)
        return (merge_overlapping(hits) if merge_adjacent else hits)[:limit]

    def _keyword(self, query: str, where: str, args: list, depth: int, fallback_or: bool) -> list[int]:
        db = self._db()
        out: list[int] = []
        for op in ("AND", "OR") if fallback_or else ("AND",):
            q = fts_query(query, op)
            if not q:
                return []
            try:
                # BM25 over at most KEYWORD_SCAN_MAX matches, newest first: a word found in 10 % of a
                # million segments would otherwise cost BM25 on all of them (the semantic leg sees all)
                rows = db.execute(
                    f"SELECT s.id, bm25(segments_fts) FROM segments_fts f CROSS JOIN segments s "
                    f"ON s.id = f.rowid WHERE segments_fts MATCH ? AND {where} ORDER BY f.rowid DESC LIMIT ?",
                    [q, *args, self.keyword_scan_max]).fetchall()
                rows.sort(key=lambda r: r[1])
                seen = set(out)
                out += [r[0] for r in rows[:depth] if r[0] not in seen]
            except sqlite3.OperationalError as e:  # defensive: fts_query() should make this unreachable
                log.warning("search: keyword query %r (from %r) failed: %s", q, query, e)
            if len(out) >= depth or q.count('"') <= 2:
                break
        return out[:depth]

    def _semantic(self, query: str, where: str, args: list, depth: int,
                  small: list[int] | None) -> list[tuple[int, float]]:
        qv = self.embedder.embed([query])[0].astype(np.float32)
        if small is not None:  # few rows pass the filters: exact cosine over them
            ids, sims = self.vectors.exact(np.array(small, dtype=np.int64), qv, depth)
            return [(int(i), float(s)) for i, s in zip(ids, sims)]
        # many rows pass: the rows nearest by binary code, ranked exactly, then those that pass the filters
        # (checked in rank order); widen the scan until enough survive
        n = self.vectors.rescore
        passes: dict[int, bool] = {}  # filter verdicts, kept across widenings
        while True:
            cand = self.vectors.candidates(qv, n)
            ids, sims = self.vectors.exact(cand, qv, len(cand))
            res: list[tuple[int, float]] = []
            for lo in range(0, len(ids), 4 * depth):
                part = [int(i) for i in ids[lo:lo + 4 * depth]]
                unknown = [i for i in part if i not in passes]
                if unknown:
                    keep = self._filter_ids(unknown, where, args)
                    passes.update((i, i in keep) for i in unknown)
                res += [(i, float(s)) for i, s in zip(part, sims[lo:lo + 4 * depth]) if passes[i]]
                if len(res) >= depth:
                    return res[:depth]
            if len(cand) >= len(self.vectors) or n >= 64 * self.vectors.rescore:
                return res
            n *= 4

    def _fetch(self, ids: Sequence[int], cols: str, where: str = "1", args: Sequence = (),
               by: str = "NOT INDEXED") -> list[tuple]:
        """Rows of ``ids`` that match ``where``. ``by`` makes SQLite look the ids up by rowid (NOT INDEXED) or
        through an index led by the id; left to itself the planner would walk a filter's index instead."""
        db = self._db()
        out: list[tuple] = []
        ids = [int(i) for i in ids]
        for i in range(0, len(ids), 900):
            part = ids[i:i + 900]
            out += db.execute(f"SELECT {cols} FROM segments {by} WHERE id IN ({','.join('?' * len(part))}) "
                              f"AND {where}", [*part, *args]).fetchall()
        return out

    def _filter_ids(self, ids: np.ndarray, where: str, args: list) -> set[int]:
        # through segments_byid, which holds every filter column: ~70 bytes an entry, where a table row with
        # its text and vector is ~1.2 KB, so checking a few thousand candidates reads ~20x fewer pages
        return {r[0] for r in self._fetch(ids, "id", where, args, by="INDEXED BY segments_byid")}

    def _hits(self, ids: list[int], scores: dict[int, float]) -> list[Hit]:
        rows = {r[0]: r[1:] for r in self._fetch(ids, "id, " + ", ".join(_q(c) for c in _COLS))}
        hits = []
        for i in ids:
            if i not in rows:  # deleted meanwhile
                continue
            (doc_id, _coll, session_id, rtstream_id, rtstream_name, channel_id, kind, index_id, s, e, text,
             meta) = rows[i]
            hits.append(Hit(doc_id, round(scores[i], 6), s, e, text, rtstream_id, rtstream_name, session_id,
                            channel_id, kind, index_id, json.loads(meta or "{}")))
        return hits
