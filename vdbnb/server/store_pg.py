"""The PostgreSQL store (``VDBNB_DATABASE_URL=postgresql://…``): what several api replicas and workers share.

The same interface and the same portable SQL as the SQLite store (store.py): ``?`` placeholders become
psycopg's, the migrations' portable types become PostgreSQL's, a transaction is this thread's connection
until it ends (so every store call made inside ``with store.transaction():`` is part of it, as on SQLite).
Migrations run in one transaction under an advisory lock: replicas that start together apply them once.
Roles (:meth:`try_lock`) are session advisory locks on a connection of their own: the database releases them
when the holder's connection ends, so a process that dies (even by SIGKILL) gives its roles up at once.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from .store import MIGRATIONS, Result, RoleLock, Store, migration_sql

log = logging.getLogger("vdbnb.server.store")
MIGRATE_LOCK = "vdbnb:migrate"
# a connection that stops answering is dropped within seconds (a role held on it is given up)
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
             "connect_timeout": 10}

_TYPES = [(re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
          (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
          (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
          (re.compile(r"\bBLOB\b", re.I), "BYTEA")]


def pg_ddl(sql: str) -> str:
    """A portable migration statement (SQLite types) in PostgreSQL's types."""
    for rx, repl in _TYPES:
        sql = rx.sub(repl, sql)
    return sql


def pg_sql(sql: str) -> str:
    """``?`` placeholders → ``%s`` (outside quotes); a literal ``%`` is escaped."""
    out, quote = [], None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _params(params: Iterable[Any]) -> list:
    return [int(p) if isinstance(p, bool) else p for p in params]


class PostgresStore(Store):
    dialect = "postgresql"
    rowid = "rowid_seq"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, max_size: int = 16):
        try:
            import psycopg  # noqa: F401
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise ImportError("the PostgreSQL store needs psycopg: pip install 'vdbnb[scale]'") from e
        self.url = url
        self._tx = threading.local()
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, open=False, timeout=30, name="vdbnb",
                                   kwargs={"autocommit": True, "row_factory": dict_row, **KEEPALIVE})
        try:
            self.pool.open(wait=True, timeout=30)
        except Exception as e:
            self.pool.close()
            raise RuntimeError(f"cannot connect to the database at {_safe(url)} ({e}); check VDBNB_DATABASE_URL "
                               "and that PostgreSQL is running") from None
        self._migrate()

    # ---- schema
    def _migrate(self) -> None:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(MIGRATE_LOCK),))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = row["version"] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version VALUES (0)")
            for i, entry in enumerate(MIGRATIONS[version:], start=version + 1):
                for stmt in migration_sql(entry, self.dialect).split(";"):
                    if stmt.strip():
                        conn.execute(pg_ddl(stmt))
                conn.execute("UPDATE schema_version SET version=%s", (i,))
                log.info("database migrated to schema v%d", i)

    # ---- statements
    def _conn(self):
        return getattr(self._tx, "conn", None)

    def _run(self, sql: str, params: Iterable[Any], fetch):
        q, p = pg_sql(sql), _params(params)
        conn = self._conn()
        if conn is not None:
            return fetch(conn.execute(q, p))
        with self.pool.connection() as conn:
            return fetch(conn.execute(q, p))

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Result:
        return self._run(sql, params, lambda cur: Result(cur.rowcount))

    def one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        return self._run(sql, params, lambda cur: cur.fetchone())

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        return self._run(sql, params, lambda cur: cur.fetchall())

    @contextmanager
    def connection(self):
        """A pooled connection of this thread's transaction, or a fresh one (for engine-specific code)."""
        conn = self._conn()
        if conn is not None:
            yield conn
            return
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator["PostgresStore"]:
        if self._conn() is not None:  # nested: part of the enclosing transaction
            yield self
            return
        with self.pool.connection() as conn:
            self._tx.conn = conn
            try:
                with conn.transaction():
                    yield self
            finally:
                self._tx.conn = None

    def batch(self, statements: list[tuple[str, Iterable[Any]]]) -> list[list[dict]]:
        conn = self._conn()
        if conn is not None:  # inside this thread's transaction: pipelined within it
            return self._pipelined(conn, statements)
        with self.pool.connection() as conn:
            # the statements up to the pipeline's one Sync are one implicit transaction (all or nothing),
            # sent together and answered together: one round trip
            return self._pipelined(conn, statements)

    @staticmethod
    def _pipelined(conn, statements) -> list[list[dict]]:
        with conn.pipeline():
            curs = [conn.execute(pg_sql(q), _params(p)) for q, p in statements]
        return [c.fetchall() if c.description else [] for c in curs]

    def try_lock(self, name: str) -> RoleLock | None:
        import psycopg
        conn = psycopg.connect(self.url, autocommit=True, **KEEPALIVE)
        key = lock_key(name)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return PgRoleLock(name, conn, key)

    def close(self) -> None:
        self.pool.close()


class PgRoleLock(RoleLock):
    """A role held as a session advisory lock on a connection of its own, with a heartbeat: a thread asks the
    connection every ``HEARTBEAT_S``, so that a holder whose session ended (PostgreSQL restarted, the backend
    was terminated, the network dropped) knows within a heartbeat, not at its next use of the role."""

    HEARTBEAT_S = 1.0

    def __init__(self, name: str, conn, key: int):
        self._conn, self._key = conn, key
        self._lost = threading.Event()
        self._stop = threading.Event()
        super().__init__(name, self._unlock, alive=lambda: not self._lost.is_set())
        self._beat = threading.Thread(target=self._heartbeat, name=f"vdbnb-role-{name}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_S):
            try:
                self._conn.execute("SELECT 1")
            except Exception as e:  # the session, and with it the lock, is gone
                if not self._stop.is_set():
                    log.warning("role %s lost: its database session ended (%s)", self.name, e)
                    self._lost.set()
                    self._conn.close()
                return

    def _unlock(self) -> None:
        self._stop.set()
        try:
            if not self._lost.is_set():
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        finally:
            self._conn.close()


def _safe(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
