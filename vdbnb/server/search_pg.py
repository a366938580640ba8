"""Hybrid search on the PostgreSQL store: the same segments, filters, legs and rank fusion as search.py.

- keyword leg: a ``tsvector`` column (the ``simple`` configuration over the text split at every character that
  is not a letter or digit: lower-cased words, no stemming, like the SQLite index's unicode61 tokenizer, so
  ``invoice_reconciler_v2.py`` is four words on both) with a GIN index; the query is built from the same sanitised phrases as
  the FTS5 query (every word quoted, so user text is inert), AND in hybrid mode with an OR fallback in keyword
  mode; at most ``keyword_scan_max`` matches (newest first) are ranked by ``ts_rank``.
- semantic leg: each vector stored as ``halfvec(384)`` (float16, as on SQLite), with an HNSW index over its
  binary quantisation (``binary_quantize(vec)::bit(384)``, Hamming distance): the ``rescore`` rows nearest by
  binary code are ranked exactly by float16 cosine, then the filters are applied in rank order (widening when
  too few pass). When the filters leave at most ``prefilter_max`` rows, they are ranked exactly instead.
- fusion: :func:`vdbnb.server.search.fuse` (reciprocal rank fusion, the same scores).
"""
from __future__ import annotations

import json
import logging
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import numpy as np

from vdbnb.errors import SearchError

from .ranking import (_COLS, KEYWORD_SCAN_MAX, MODES, PREFILTER_MAX, Doc, Hit, _q, _where, fts_words, fuse,
                      merge_overlapping)
from .vectors import DIM, RESCORE

log = logging.getLogger(__name__)

SCHEMA = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS search_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS segments (
    id BIGSERIAL PRIMARY KEY,
    doc_id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL, session_id TEXT, rtstream_id TEXT, rtstream_name TEXT,
    channel_id TEXT, kind TEXT, index_id TEXT, start DOUBLE PRECISION, "end" DOUBLE PRECISION,
    text TEXT NOT NULL, metadata TEXT,
    tsv tsvector GENERATED ALWAYS AS
        (to_tsvector('simple', regexp_replace(text, '[^[:alnum:]]+', ' ', 'g'))) STORED,
    vec halfvec({DIM}) NOT NULL);
CREATE INDEX IF NOT EXISTS segments_coll ON segments(collection_id, start);
CREATE INDEX IF NOT EXISTS segments_stream ON segments(rtstream_id, start);
CREATE INDEX IF NOT EXISTS segments_session ON segments(session_id, start);
CREATE INDEX IF NOT EXISTS segments_index ON segments(index_id);
CREATE INDEX IF NOT EXISTS segments_chan ON segments(collection_id, channel_id, kind);
CREATE INDEX IF NOT EXISTS segments_tsv ON segments USING gin(tsv);
CREATE INDEX IF NOT EXISTS segments_bits ON segments
    USING hnsw ((binary_quantize(vec)::bit({DIM})) bit_hamming_ops) WITH (m = 16, ef_construction = 64);
"""
EF_SEARCH = 1000  # HNSW candidates per scan step (pgvector's maximum); iterative scans go past it


def tsquery(text: str, op: str) -> str:
    """A safe ``to_tsquery('simple', …)`` argument: each phrase's words quoted and joined by <->."""
    parts = [" <-> ".join(f"'{w}'" for w in words) for words in fts_words(text)]
    return f" {op} ".join(f"({p})" for p in parts)


def vec_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.5g}" for x in np.asarray(v, dtype=np.float32)) + "]"


class PgSearchIndex:
    """The search backend on a :class:`~vdbnb.server.store_pg.PostgresStore` (its own tables in that database)."""

    def __init__(self, store, embedder=None, prefilter_max: int = PREFILTER_MAX,
                 keyword_scan_max: int = KEYWORD_SCAN_MAX, rescore: int = RESCORE, close_store: bool = False):
        self.store = store
        self._close_store = close_store
        self._embedder = embedder
        self.prefilter_max = prefilter_max
        self.keyword_scan_max = keyword_scan_max
        self.rescore = rescore
        self._legs = ThreadPoolExecutor(4, thread_name_prefix="vdbnb-search")
        from .store_pg import MIGRATE_LOCK, lock_key
        with store.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(MIGRATE_LOCK + ":search"),))
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
        row = store.one("SELECT value FROM search_meta WHERE key='max_duration'")
        self._max_dur = float(row["value"]) if row else 0.0

    @property
    def embedder(self):
        if self._embedder is None:
            from vdbnb.ai.embed import get_embedder
            self._embedder = get_embedder()
        return self._embedder

    def __len__(self) -> int:
        return self.store.one("SELECT count(*) AS n FROM segments")["n"]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._legs.shutdown(wait=False)
        if self._close_store:
            self.store.close()

    def __enter__(self) -> "PgSearchIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writes
    def add(self, docs: Sequence[Doc], vectors: np.ndarray | None = None, batch_size: int = 64) -> None:
        """Insert or replace (by doc_id) segments. Texts are embedded here unless ``vectors`` are given."""
        if not docs:
            return
        if vectors is None:
            vectors = self.embedder.embed([d.text for d in docs], batch_size=batch_size)
        if len(vectors) != len(docs):
            raise SearchError(f"add() got {len(docs)} docs but {len(vectors)} vectors: pass one vector per doc")
        last = {d.doc_id: i for i, d in enumerate(docs)}
        rows = []
        for d in docs:
            i = last[d.doc_id]
            if docs[i] is not d:
                continue
            rows.append((d.doc_id, d.collection_id, d.session_id, d.rtstream_id, d.rtstream_name, d.channel_id,
                         d.kind, d.index_id, float(d.start), float(d.end), d.text or "",
                         json.dumps(d.metadata or {}, default=str), vec_literal(vectors[i])))
        cols = ",".join(_q(c) for c in _COLS)
        sets = ",".join(f"{_q(c)}=excluded.{_q(c)}" for c in _COLS[1:]) + ",vec=excluded.vec"
        with self.store.connection() as conn, conn.transaction():
            conn.cursor().executemany(
                f"INSERT INTO segments ({cols}, vec) VALUES ({','.join(['%s'] * len(_COLS))}, %s::halfvec) "
                f"ON CONFLICT (doc_id) DO UPDATE SET {sets}", rows)
            dur = max(float(d.end) - float(d.start) for d in docs)
            if dur > self._max_dur:
                conn.execute("INSERT INTO search_meta VALUES ('max_duration', %s) ON CONFLICT (key) DO UPDATE "
                             "SET value = GREATEST(search_meta.value::float8, excluded.value::float8)::text",
                             (str(dur),))
                self._max_dur = dur

    def bulk_add(self, docs: Sequence[Doc], vectors: np.ndarray) -> None:
        """Append many new segments at once (binary COPY; doc_ids must be new): for loading large corpora.
        Faster still with the vector and text indexes dropped first and rebuilt after (:meth:`reindex`)."""
        vecs = np.asarray(vectors, dtype=">f2")
        head = struct.pack(">hh", vecs.shape[1], 0)
        types = ["text"] * 8 + ["float8", "float8", "text", "text", "bytea"]
        with self.store.connection() as conn, conn.transaction():
            with conn.cursor().copy(f"COPY segments ({','.join(_q(c) for c in _COLS)}, vec) FROM STDIN "
                                    "WITH (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for d, v in zip(docs, vecs):
                    copy.write_row((d.doc_id, d.collection_id, d.session_id, d.rtstream_id, d.rtstream_name,
                                    d.channel_id, d.kind, d.index_id, float(d.start), float(d.end), d.text or "",
                                    json.dumps(d.metadata or {}, default=str), head + v.tobytes()))
            dur = max(float(d.end) - float(d.start) for d in docs)
            if dur > self._max_dur:
                conn.execute("INSERT INTO search_meta VALUES ('max_duration', %s) ON CONFLICT (key) DO UPDATE "
                             "SET value = GREATEST(search_meta.value::float8, excluded.value::float8)::text",
                             (str(dur),))
                self._max_dur = dur

    def drop_indexes(self) -> None:
        """Drop the vector and text indexes (before a bulk load; :meth:`reindex` puts them back)."""
        self.store.execute("DROP INDEX IF EXISTS segments_bits")
        self.store.execute("DROP INDEX IF EXISTS segments_tsv")

    def reindex(self) -> None:
        """Create the indexes the schema declares (after :meth:`drop_indexes` and a bulk load), then ANALYZE."""
        with self.store.connection() as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("SET max_parallel_maintenance_workers = 2")
            for stmt in SCHEMA.split(";"):
                if "CREATE INDEX" in stmt:
                    conn.execute(stmt)
            conn.execute("ANALYZE segments")

    def delete(self, doc_ids: Iterable[str]) -> int:
        doc_ids = list(doc_ids)
        if not doc_ids:
            return 0
        return self.store.execute("DELETE FROM segments WHERE doc_id = ANY(?)", (doc_ids,)).rowcount

    def delete_where(self, *, collection_id: str | None = None, session_id: str | None = None,
                     rtstream_id: str | None = None, index_id: str | None = None) -> int:
        where, args = _where(collection_id=collection_id, session_id=session_id, rtstream_id=rtstream_id,
                             index_id=index_id)
        if not args:
            raise SearchError("delete_where() needs at least one of collection_id, session_id, rtstream_id, "
                              "index_id")
        return self.store.execute(f"DELETE FROM segments WHERE {where}", args).rowcount

    # ---- search
    def compact(self) -> None:
        """After a delete: nothing to merge (PostgreSQL's autovacuum reclaims the deleted rows)."""

    def search(self, query: str, collection_id: str, rtstream_id: str | None = None,
               session_id: str | None = None, index_id: str | None = None,
               kinds: Sequence[str] | None = None, channel_ids: Sequence[str] | None = None,
               start: float | None = None, end: float | None = None, limit: int = 10,
               score_threshold: float | None = None, mode: str = "hybrid",
               merge_adjacent: bool = False) -> list[Hit]:
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
        passing = self.store.one(f"SELECT count(*) AS n FROM (SELECT 1 FROM segments WHERE {where} LIMIT ?) t",
                                 [*args, self.prefilter_max + 1])["n"]
        if not passing:
            return []
        small = passing <= self.prefilter_max
        keyword = self._legs.submit(self._keyword, query, where, args, depth, mode == "keyword") \
            if mode != "semantic" else None
        semantic = self._semantic(query, where, args, depth, small) if mode != "keyword" else []
        order, final = fuse(semantic, keyword.result() if keyword is not None else [], mode, score_threshold)
        hits = self._hits(order[: limit * 3 if merge_adjacent else limit], final)
        return (merge_overlapping(hits) if merge_adjacent else hits)[:limit]

    def _keyword(self, query: str, where: str, args: list, depth: int, fallback_or: bool) -> list[int]:
        out: list[int] = []
        for op in ("&", "|") if fallback_or else ("&",):
            q = tsquery(query, op)
            if not q:
                return []
            rows = self.store.all(
                f"SELECT id, rank FROM (SELECT id, ts_rank(tsv, query) AS rank FROM segments, "
                f"to_tsquery('simple', ?) query WHERE tsv @@ query AND {where} ORDER BY id DESC LIMIT ?) m "
                "ORDER BY rank DESC, id DESC", [q, *args, self.keyword_scan_max])
            seen = set(out)
            out += [r["id"] for r in rows[:depth] if r["id"] not in seen]
            if len(out) >= depth or q.count("(") <= 1:
                break
        return out[:depth]

    def _semantic(self, query: str, where: str, args: list, depth: int, small: bool) -> list[tuple[int, float]]:
        qv = vec_literal(self.embedder.embed([query])[0])
        if small:  # few rows pass the filters: exact cosine over them
            rows = self.store.all(f"SELECT id, 1 - (vec <=> ?::halfvec) AS sim FROM segments WHERE {where} "
                                  "ORDER BY vec <=> ?::halfvec LIMIT ?", [qv, *args, qv, depth])
            return [(r["id"], float(r["sim"])) for r in rows]
        return self._semantic_vec(qv, where, args, depth, self.rescore)

    def _semantic_vec(self, qv: str, where: str, args: list, depth: int, n: int) -> list[tuple[int, float]]:
        """The ``n`` rows nearest by binary code (HNSW), ranked exactly by halfvec cosine, those passing
        ``where`` first ``depth`` of them; the shortlist widens (×4, up to 64×) until enough pass."""
        while True:
            with self.store.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}")
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute(f"SET LOCAL hnsw.max_scan_tuples = {max(20000, 4 * n)}")
                rows = conn.execute(
                    f"SELECT id, sim FROM (SELECT c.id, 1 - (c.vec <=> %s::halfvec) AS sim, c.pass FROM "
                    f"(SELECT id, vec, ({_pg(where)}) AS pass FROM segments ORDER BY "
                    f"binary_quantize(vec)::bit({DIM}) <~> binary_quantize(%s::halfvec)::bit({DIM}) LIMIT %s) c) r "
                    "WHERE pass ORDER BY sim DESC LIMIT %s", [qv, *args, qv, n, depth]).fetchall()
            res = [(r["id"], float(r["sim"])) for r in rows]
            if len(res) >= depth or n >= 64 * self.rescore:
                return res
            n *= 4

    def nearest(self, q: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The vector layer alone, no filter: the k rows nearest to ``q`` (the semantic leg's ranking)."""
        return self._semantic_vec(vec_literal(q), "1=1", [], k, self.rescore)

    def _hits(self, ids: list[int], scores: dict[int, float]) -> list[Hit]:
        if not ids:
            return []
        rows = {r["id"]: r for r in self.store.all(
            f"SELECT id, {', '.join(_q(c) for c in _COLS)} FROM segments WHERE id = ANY(?)", (list(ids),))}
        hits = []
        for i in ids:
            r = rows.get(i)
            if r is None:
                continue
            hits.append(Hit(r["doc_id"], round(scores[i], 6), r["start"], r["end"], r["text"], r["rtstream_id"],
                            r["rtstream_name"], r["session_id"], r["channel_id"], r["kind"], r["index_id"],
                            json.loads(r["metadata"] or "{}")))
        return hits


def _pg(sql: str) -> str:
    from .store_pg import pg_sql
    return pg_sql(sql)
