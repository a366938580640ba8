"""The server's parts, wired once: store, media, notifier, auth, bus, sessions, ingest, pipelines."""
from __future__ import annotations

import base64
import secrets
import os
import socket
import uuid
from pathlib import Path

from fastapi import Request

from ..config import FINGERPRINT_KEY_FILE, MEDIA_KEY_FILE, Settings
from ..private_fs import private_dir, tighten_sqlite
from ..redaction import Redactor, set_redactor
from .auth import Auth, Principal
from .bus import EventBus
from .exports import export_runners
from .hub import Hub
from .ingest import Ingest
from .jobs import Jobs
from .kernel import KernelEvents
from .media_store import open_media_store
from .media_urls import MediaSigner
from .notify import open_notifier
from .sessions import Sessions
from .store import now, open_store
from .webhooks import Outbox

DEFAULT_COLLECTION = "default"


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        # the data dir is private (0700): it holds the database (transcripts, OCR text, window titles) and media
        private_dir(self.data_dir)
        # this process among all that share the store: names its leases, heartbeats and ingest links
        self.process_id = f"{settings.role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = open_store(settings.database_url, self.data_dir)
        self.media = open_media_store(settings.media_url, self.data_dir, settings.scratch_max_mb * 1024 ** 2)
        self.hub = Hub()
        self.notifier = open_notifier(self.store, self.hub)
        self.auth = Auth(self.store, self.data_dir, settings.api_key)
        self.api_key = self.auth.ensure_api_key()
        self.webhook_secret = self.auth.ensure_webhook_secret()
        self.outbox = Outbox(self.store, self.webhook_secret, settings.webhook_max_backoff_s,
                             settings.webhook_timeout_s, settings.webhook_retry_s, notifier=self.notifier)
        self.bus = EventBus(self.store, self.notifier, self.outbox)
        self.sessions = Sessions(self.store, self.bus)
        self.ingest = Ingest(self.store, self.sessions, self.media)
        self.ingest.notifier = self.notifier
        # export work: queued here, run where exports run (role all, `vdbnb worker`): jobs.py
        self.jobs = Jobs(self.store, self.notifier, self.process_id, settings.lease_s, export_runners(self))
        self.kernel = KernelEvents(self)   # cell fragments -> cell events
        self.ingest.listeners.append(self.kernel.on_fragment)
        self.exports_dir = self.data_dir / "exports"
        # media URLs: a key of their own (never derived from another secret), shared by replicas through the store
        self.media_signer = MediaSigner(self.data_dir / MEDIA_KEY_FILE, settings.media_url_ttl_s,
                                        store=self.store if self.shared else None, name=MEDIA_KEY_FILE)
        # the one redaction step of every pipeline; fingerprints keyed by this install (every replica alike)
        fp_key = self.auth.server_secret(FINGERPRINT_KEY_FILE, lambda: base64.urlsafe_b64encode(
            secrets.token_bytes(32)).decode().rstrip("="))
        self.redactor = set_redactor(Redactor(base64.urlsafe_b64decode(fp_key + "=" * (-len(fp_key) % 4)),
                                              keep=settings.redact_keep_labels))
        self.pipelines = None  # set by the app factory (role all) or `vdbnb worker` when AI is enabled
        self.lifecycle = None  # set by serve(): when an embedded server exits by itself (lifecycle.py)
        self._search = None
        self.store.insert("collections", {"id": DEFAULT_COLLECTION, "name": "Default Collection",
                                          "description": "created by vdbnb", "created_at": now()}, ignore=True)

    @property
    def shared(self) -> bool:
        """Other processes may share this store (PostgreSQL): links, heartbeats and roles are kept in it."""
        return self.store.dialect == "postgresql"

    def search_index(self):
        """The hybrid search index (SQLite: its own file beside the store; PostgreSQL: tables in it)."""
        if self._search is None:
            if self.store.dialect == "postgresql":
                from .search_pg import PgSearchIndex
                self._search = PgSearchIndex(self.store)
            else:
                from .search import SearchIndex
                self._search = SearchIndex(self.data_dir / "search.sqlite3")
                tighten_sqlite(self.data_dir / "search.sqlite3")  # the indexed text is as private as its source
        return self._search

    def backends(self) -> dict:
        """What this process runs on (`vdbnb info`, /health)."""
        return {"store": {"kind": self.store.dialect, "location": redact_url(self.store.url)},
                "media": self.media.describe(), "notifier": self.notifier.kind, "role": self.settings.role,
                "process_id": self.process_id}

    # signed media URLs (players cannot send headers): see media_urls.py
    def sign(self, path: str, ttl: float | None = None) -> str:
        return self.media_signer.sign(path, ttl)

    def verify(self, path: str, exp: int, sig: str) -> bool:
        return self.media_signer.verify(path, exp, sig)


def redact_url(url: str) -> str:
    """A database URL without its password."""
    from urllib.parse import urlsplit, urlunsplit
    u = urlsplit(url)
    if u.password:
        netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
    return url


def ctx_of(request: Request) -> Context:
    return request.app.state.ctx


def principal(request: Request) -> Principal:
    return ctx_of(request).auth.authenticate(request.headers.get("x-access-token"))


def admin(request: Request) -> Principal:
    p = principal(request)
    Auth.require_admin(p)
    return p


def reader(request: Request) -> Principal:
    """The API key or an agent token: reads of what was captured."""
    p = principal(request)
    Auth.require_reader(p)
    return p


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
