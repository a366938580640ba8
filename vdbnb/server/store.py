"""The server's store (the single source of truth): one interface, two engines.

- :class:`SQLiteStore` (the default: one file in the data dir, WAL, zero set-up) — this module;
- ``PostgresStore`` (``VDBNB_DATABASE_URL=postgresql://…``, several replicas and workers) — ``store_pg.py``.

Callers write portable SQL with ``?`` placeholders (each engine translates) and use the helpers below for
everything that differs between engines: :meth:`Store.insert` (``ignore=`` for insert-if-absent),
:meth:`Store.upsert`, :meth:`Store.transaction`, :attr:`Store.rowid` (the column that orders rows by
insertion), :meth:`Store.try_lock` (one holder of a named role at a time, e.g. the webhook dispatcher).
``MIGRATIONS`` is one list for both engines: written in the portable subset (TEXT, INTEGER, REAL, BLOB,
``INTEGER PRIMARY KEY AUTOINCREMENT``) and translated for PostgreSQL; an entry may instead be a dict
``{"sqlite": sql, "postgresql": sql}`` when the engines need different statements.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..private_fs import private_dir, tighten_sqlite

MIGRATIONS: list = [
    # 1: foundation
    """
    CREATE TABLE collections (id TEXT PRIMARY KEY, name TEXT, description TEXT, is_public INTEGER DEFAULT 0,
                              created_at REAL);
    CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, prefix TEXT, created_at REAL,
                           revoked_at REAL);
    CREATE TABLE client_tokens (token_hash TEXT PRIMARY KEY, collection_id TEXT NOT NULL, scope TEXT NOT NULL,
                                user_id TEXT, created_at REAL, expires_at REAL NOT NULL);
    CREATE TABLE ws_tickets (ticket_hash TEXT PRIMARY KEY, collection_id TEXT NOT NULL, all_events INTEGER,
                             created_at REAL, expires_at REAL NOT NULL);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY, collection_id TEXT NOT NULL, end_user_id TEXT, client_id TEXT, status TEXT NOT NULL,
        callback_url TEXT, ws_connection_id TEXT, metadata TEXT, channels TEXT, primary_video_channel_id TEXT,
        exported_video_id TEXT, export_status TEXT, error TEXT, created_at REAL, updated_at REAL,
        started_at REAL, stopped_at REAL, last_media_at REAL);
    CREATE INDEX sessions_coll ON sessions(collection_id, created_at);
    CREATE TABLE rtstreams (
        id TEXT PRIMARY KEY, session_id TEXT, collection_id TEXT NOT NULL, channel_id TEXT NOT NULL,
        source_channel_id TEXT, name TEXT, media_types TEXT, is_primary INTEGER DEFAULT 0, store INTEGER DEFAULT 0,
        status TEXT, sample_rate INTEGER, created_at REAL, first_t REAL, last_t REAL, last_seq INTEGER DEFAULT -1,
        transcript_status TEXT, transcript_ws TEXT, exported_video_id TEXT, codec_info TEXT);
    CREATE INDEX rtstreams_session ON rtstreams(session_id);
    CREATE TABLE fragments (rtstream_id TEXT NOT NULL, seq INTEGER NOT NULL, t0 REAL, t1 REAL, size INTEGER,
                            path TEXT, received_at REAL, PRIMARY KEY (rtstream_id, seq));
    CREATE TABLE events (
        id TEXT PRIMARY KEY, channel TEXT, event TEXT, session_id TEXT, collection_id TEXT, rtstream_id TEXT,
        rtstream_name TEXT, channel_id TEXT, index_id TEXT, text TEXT, is_final INTEGER, start REAL, "end" REAL,
        label TEXT, confidence REAL, engine TEXT, captured_at REAL, processed_at REAL, emitted_at REAL,
        data TEXT, target_ws TEXT, rowid_seq INTEGER);
    CREATE INDEX events_session ON events(session_id, emitted_at);
    CREATE INDEX events_stream ON events(rtstream_id, channel, start);
    CREATE INDEX events_coll ON events(collection_id, emitted_at);
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT UNIQUE, session_id TEXT, url TEXT NOT NULL,
        body TEXT NOT NULL, created_at REAL, attempts INTEGER DEFAULT 0, next_attempt_at REAL,
        delivered_at REAL, last_error TEXT);
    CREATE INDEX outbox_pending ON webhook_outbox(delivered_at, session_id, id);
    CREATE TABLE videos (id TEXT PRIMARY KEY, collection_id TEXT, session_id TEXT, rtstream_id TEXT, name TEXT,
                         kind TEXT, path TEXT, duration REAL, start REAL, "end" REAL, status TEXT,
                         created_at REAL, error TEXT);
    CREATE TABLE rt_events (id TEXT PRIMARY KEY, collection_id TEXT, event_prompt TEXT, label TEXT,
                            created_at REAL);
    CREATE TABLE scene_indexes (
        id TEXT PRIMARY KEY, rtstream_id TEXT NOT NULL, collection_id TEXT, extraction_type TEXT,
        extraction_config TEXT, prompt TEXT, model_name TEXT, model_config TEXT, name TEXT, status TEXT,
        ws_connection_id TEXT, created_at REAL, cursor REAL);
    CREATE TABLE alerts (id TEXT PRIMARY KEY, index_id TEXT NOT NULL, rtstream_id TEXT, event_id TEXT,
                         callback_url TEXT, ws_connection_id TEXT, status TEXT, created_at REAL);
    """,
    # 2: pipeline cursors (where each AI pipeline is in each stream; survives restarts)
    """
    CREATE TABLE pipeline_cursors (rtstream_id TEXT NOT NULL, pipeline TEXT NOT NULL, seq INTEGER NOT NULL,
                                   updated_at REAL, PRIMARY KEY (rtstream_id, pipeline));
    """,
    # 3: processes sharing the store (api replicas, workers): leases on AI work per stream, ingest links with
    # heartbeats, server secrets, a live process table; on PostgreSQL events get an insertion-order sequence
    """
    CREATE TABLE stream_leases (rtstream_id TEXT NOT NULL, pipeline TEXT NOT NULL, holder TEXT NOT NULL,
                                expires_at REAL NOT NULL, acquired_at REAL, PRIMARY KEY (rtstream_id, pipeline));
    CREATE TABLE ingest_links (session_id TEXT NOT NULL, replica TEXT NOT NULL, links INTEGER NOT NULL,
                               heartbeat_at REAL NOT NULL, PRIMARY KEY (session_id, replica));
    CREATE TABLE server_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, created_at REAL);
    CREATE TABLE processes (id TEXT PRIMARY KEY, role TEXT, host TEXT, pid INTEGER, url TEXT, started_at REAL,
                            heartbeat_at REAL, health TEXT);
    """,
    {"sqlite": "", "postgresql": """
    CREATE SEQUENCE events_rowid_seq;
    ALTER TABLE events ALTER COLUMN rowid_seq SET DEFAULT nextval('events_rowid_seq');
    CREATE INDEX events_order ON events(emitted_at, rowid_seq);
    """},
    # 5: webhook dead letters (retried for a bounded time, then set aside until replayed)
    """
    ALTER TABLE webhook_outbox ADD COLUMN dead_at REAL;
    CREATE INDEX outbox_dead ON webhook_outbox(dead_at);
    """,
    # 6: export jobs (queued by any replica, run where exports run: server/jobs.py)
    """
    CREATE TABLE export_jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, session_id TEXT, rtstream_id TEXT,
                              params TEXT, base_url TEXT, status TEXT NOT NULL, progress REAL DEFAULT 0,
                              holder TEXT, expires_at REAL, attempts INTEGER DEFAULT 0, result TEXT, error TEXT,
                              error_code TEXT, created_at REAL, updated_at REAL);
    CREATE INDEX export_jobs_free ON export_jobs(status, created_at);
    CREATE INDEX export_jobs_session ON export_jobs(session_id);
    """,
    # 7: the batch of final transcripts each prompt-driven audio index is filling (a worker that takes a
    # stream over goes on with it: pipelines/indexer.py)
    """
    CREATE TABLE index_batches (index_id TEXT PRIMARY KEY, rtstream_id TEXT, texts TEXT NOT NULL, start REAL,
                                "end" REAL, updated_at REAL);
    """,
]


def now() -> float:
    return time.time()


class Result:
    """What a write statement reports (the same on both engines)."""

    def __init__(self, rowcount: int):
        self.rowcount = rowcount


class Store:
    """The store interface. Thread-safe; rows are dicts. See the module docstring."""

    dialect = "?"
    rowid = "rowid"      # orders rows of a table by insertion (events, outbox)
    for_update = ""      # appended to a SELECT that must lock the rows it reads until the transaction ends
    skip_locked = ""     # appended to a SELECT that claims work rows: locks them, skipping rows others locked
    url = ""

    # ---- statements (portable SQL, ``?`` placeholders)
    def execute(self, sql: str, params: Iterable[Any] = ()) -> Result:
        raise NotImplementedError

    def one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        raise NotImplementedError

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        raise NotImplementedError

    def transaction(self):
        """``with store.transaction():`` — every store call of this thread inside the block is one
        transaction (committed at the end, rolled back on an exception); a nested block joins it."""
        raise NotImplementedError

    def batch(self, statements: list[tuple[str, Iterable[Any]]]) -> list[list[dict]]:
        """Run ``(sql, params)`` statements in order as one transaction (joining this thread's, if any) and
        return each one's rows (a SELECT's, or an ``INSERT/UPDATE … RETURNING``'s; [] for the others). On
        PostgreSQL they travel in one round trip (pipeline mode): a hot path such as ingest pays one network
        wait, not one per statement. A statement reads what the earlier ones wrote."""
        raise NotImplementedError

    def try_lock(self, name: str) -> "RoleLock | None":
        """Take the role ``name`` (e.g. the webhook dispatcher) if no process sharing this store holds it:
        a :class:`RoleLock` until released or this process dies, else None."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def schema_version(self) -> int:
        return self.one("SELECT version FROM schema_version")["version"]

    # ---- portable helpers
    def insert(self, table: str, row: dict, ignore: bool = False) -> bool:
        """Insert ``row``; with ``ignore=True`` a row whose key exists is left alone. True if inserted."""
        cols = ",".join(f'"{c}"' for c in row)
        qs = ",".join("?" for _ in row)
        tail = " ON CONFLICT DO NOTHING" if ignore else ""
        return self.execute(f"INSERT INTO {table} ({cols}) VALUES ({qs}){tail}",
                            [_enc(v) for v in row.values()]).rowcount > 0

    def upsert(self, table: str, row: dict, key: Iterable[str]) -> None:
        """Insert ``row``, or update the row with the same ``key`` columns to these values."""
        key = list(key)
        cols = ",".join(f'"{c}"' for c in row)
        qs = ",".join("?" for _ in row)
        sets = ",".join(f'"{c}"=excluded."{c}"' for c in row if c not in key) or f'"{key[0]}"=excluded."{key[0]}"'
        self.execute(f"INSERT INTO {table} ({cols}) VALUES ({qs}) ON CONFLICT ({','.join(key)}) DO UPDATE SET {sets}",
                     [_enc(v) for v in row.values()])

    def update(self, table: str, key: str, key_value: Any, **fields: Any) -> int:
        sets = ",".join(f'"{c}"=?' for c in fields)
        return self.execute(f"UPDATE {table} SET {sets} WHERE {key}=?",
                            [_enc(v) for v in fields.values()] + [key_value]).rowcount


class RoleLock:
    """A held role (see :meth:`Store.try_lock`)."""

    def __init__(self, name: str, release, alive=None):
        self.name = name
        self._release = release
        self._alive = alive

    def held(self) -> bool:
        """Still held (on PostgreSQL: its session is still open)."""
        return self._release is not None and (self._alive is None or self._alive())

    def release(self) -> None:
        if self._release is not None:
            rel, self._release = self._release, None
            try:
                rel()
            except Exception:  # the connection is gone: so is the lock
                pass


def migration_sql(entry, dialect: str) -> str:
    return entry.get(dialect, "") if isinstance(entry, dict) else entry


class SQLiteStore(Store):
    """One SQLite connection (WAL) shared by the process's threads under a lock: the embedded default."""

    dialect = "sqlite"
    rowid = "rowid"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        private_dir(self.path.parent)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA secure_delete=ON")  # a deleted capture is overwritten, not left in free pages
        tighten_sqlite(self.path)  # transcripts, OCR text, window titles: owner only (-wal/-shm too)
        self._roles: set[str] = set()
        self._depth = 0
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                self.db.execute("INSERT INTO schema_version VALUES (0)")
            for i, entry in enumerate(MIGRATIONS[version:], start=version + 1):
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in migration_sql(entry, self.dialect).split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                    self.db.execute("UPDATE schema_version SET version=?", (i,))
                    self.db.execute("COMMIT")
                except Exception:
                    self.db.execute("ROLLBACK")
                    raise

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Result:
        with self._lock:
            return Result(self.db.execute(sql, tuple(params)).rowcount)

    def one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        with self._lock:
            r = self.db.execute(sql, tuple(params)).fetchone()
        return dict(r) if r else None

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.db.execute(sql, tuple(params)).fetchall()]

    def batch(self, statements: list[tuple[str, Iterable[Any]]]) -> list[list[dict]]:
        with self.transaction():
            out = []
            for sql, params in statements:
                cur = self.db.execute(sql, tuple(params))
                out.append([dict(r) for r in cur.fetchall()] if cur.description else [])
            return out

    @contextmanager
    def transaction(self) -> Iterator["SQLiteStore"]:
        with self._lock:  # re-entrant: this thread's store calls inside the block share the transaction
            if self._depth:  # nested: part of the enclosing transaction
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._depth = 0

    def try_lock(self, name: str) -> "RoleLock | None":
        # one process owns an SQLite data dir (the embedded server): the role is this process's unless taken
        with self._lock:
            if name in self._roles:
                return None
            self._roles.add(name)
        return RoleLock(name, lambda: self._roles.discard(name))

    def close(self) -> None:
        with self._lock:
            self.db.close()


def open_store(database_url: str | None, data_dir: Path) -> Store:
    """The store named by ``database_url`` (``postgresql://…``), or SQLite in the data dir when it is empty."""
    if not database_url or database_url.startswith("sqlite"):
        path = Path(database_url.split("sqlite:///", 1)[1]) if database_url and "sqlite:///" in database_url \
            else Path(data_dir) / "vdbnb.sqlite3"
        return SQLiteStore(path)
    if database_url.startswith(("postgresql://", "postgres://")):
        from .store_pg import PostgresStore
        return PostgresStore(database_url)
    raise ValueError(f"unsupported database URL {database_url.split(':', 1)[0]}://…: use postgresql://user:pw@host:"
                     "port/db, or leave VDBNB_DATABASE_URL unset for SQLite in the data dir")


def _enc(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, bool):
        return int(v)
    return v


def dec(v: Any, default: Any = None) -> Any:
    if v is None or v == "":
        return default
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return default
