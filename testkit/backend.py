"""Where a test server keeps its state (``Backend``): the embedded default (SQLite + files in its data dir) or
the scale-out one (a fresh PostgreSQL database + a fresh S3 prefix on engines this process starts once)."""
from __future__ import annotations

from pathlib import Path


ENGINES: dict = {}


def engine(name: str):
    """This process's PostgreSQL ("pg") or SeaweedFS S3 ("s3"), started on first use (:func:`stop_engines`)."""
    if name not in ENGINES:
        from testkit.engines import Postgres, SeaweedS3, engines_available
        missing = engines_available()
        if missing:
            raise RuntimeError(f"the scale-out tests need PostgreSQL and S3 engines: {missing}")
        ENGINES[name] = (Postgres() if name == "pg" else SeaweedS3()).start()
    return ENGINES[name]


def stop_engines() -> None:
    for eng in list(ENGINES.values()):
        eng.stop()
    ENGINES.clear()


class Backend:
    """Where a test server keeps its state: "sqlite" (the embedded default: SQLite + files in the data dir) or
    "postgresql" (a fresh PostgreSQL database + a fresh S3 prefix on the session's engines)."""

    def __init__(self, name: str):
        self.name = name
        self.database_url = self.media_url = None
        if name == "postgresql":
            self.pg, self.s3 = engine("pg"), engine("s3")
            self.database_url, self.media_url = self.pg.new_database(), self.s3.new_prefix()

    @property
    def shared(self) -> bool:
        return self.name == "postgresql"

    def env(self) -> dict:
        if not self.shared:
            return {}
        return {"VDBNB_DATABASE_URL": self.database_url, "VDBNB_MEDIA_URL": self.media_url, **self.s3.env()}

    def fragments(self, data_dir: Path, sid: str) -> dict[str, bytes]:
        """Stored fragment objects of a session: relative key -> bytes (files or S3 objects)."""
        if self.shared:
            return self.s3.objects(self.media_url, f"media/{sid}/")
        base = Path(data_dir) / "media"
        return {str(p.relative_to(base.parent)): p.read_bytes() for p in (base / sid).rglob("*.frag")}

    def webhook_secret(self, data_dir: Path) -> str:
        """The webhook signing secret: in the shared store (every replica agrees), or the data dir's file."""
        if self.shared:
            import psycopg
            with psycopg.connect(self.database_url) as c:
                return c.execute("SELECT value FROM server_secrets WHERE name='webhook_secret'").fetchone()[0]
        return (Path(data_dir) / "webhook_secret").read_text().strip()

    def execute(self, data_dir: Path, sql: str) -> int:
        """Run one statement on the store behind a (stopped) server's back; returns the row count."""
        if self.shared:
            import psycopg
            with psycopg.connect(self.database_url, autocommit=True) as c:
                return c.execute(sql).rowcount
        import sqlite3
        db = sqlite3.connect(Path(data_dir) / "vdbnb.sqlite3")
        try:
            with db:
                return db.execute(sql).rowcount
        finally:
            db.close()

    def database_bytes(self, data_dir: Path) -> bytes:
        """Everything the store holds, as raw bytes (the SQLite files, or a PostgreSQL dump)."""
        if self.shared:
            return self.pg.dump(self.database_url)
        return b"".join(p.read_bytes() for p in Path(data_dir).glob("vdbnb.sqlite3*"))
