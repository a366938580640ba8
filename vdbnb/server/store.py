"""SQLite store (WAL) with versioned migrations: the server's single source of truth."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

MIGRATIONS: list[str] = [
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
]


def now() -> float:
    return time.time()


class Store:
    """Thread-safe wrapper over one SQLite connection (WAL)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        with self._lock:
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                self.db.execute("INSERT INTO schema_version VALUES (0)")
            for i, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                    self.db.execute("UPDATE schema_version SET version=?", (i,))
                    self.db.execute("COMMIT")
                except Exception:
                    self.db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        return self.one("SELECT version FROM schema_version")["version"]

    # ------------------------------------------------------------------ helpers
    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, tuple(params))

    def one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        with self._lock:
            r = self.db.execute(sql, tuple(params)).fetchone()
        return dict(r) if r else None

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.db.execute(sql, tuple(params)).fetchall()]

    def transaction(self):
        return _Tx(self)

    def insert(self, table: str, row: dict, replace: bool = False) -> None:
        cols = ",".join(f'"{c}"' for c in row)
        qs = ",".join("?" for _ in row)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.execute(f"{verb} INTO {table} ({cols}) VALUES ({qs})", [_enc(v) for v in row.values()])

    def update(self, table: str, key: str, key_value: Any, **fields: Any) -> None:
        sets = ",".join(f'"{c}"=?' for c in fields)
        self.execute(f"UPDATE {table} SET {sets} WHERE {key}=?", [_enc(v) for v in fields.values()] + [key_value])

    def close(self) -> None:
        with self._lock:
            self.db.close()


class _Tx:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self):
        self.store._lock.acquire()
        self.store.db.execute("BEGIN IMMEDIATE")
        return self.store

    def __exit__(self, exc_type, exc, tb):
        try:
            self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
        return False


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
