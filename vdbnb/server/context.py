"""The server's parts, wired once: store, media, notifier, auth, bus, sessions, ingest, pipelines."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import time
import uuid
from pathlib import Path

from fastapi import Request

from ..config import Settings
from .auth import Auth, Principal
from .bus import EventBus
from .hub import Hub
from .ingest import Ingest
from .kernel import KernelEvents
from .media_store import open_media_store
from .notify import open_notifier
from .sessions import Sessions
from .store import now, open_store
from .webhooks import Outbox

DEFAULT_COLLECTION = "default"
URL_KEY = "media_url_key"


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        # a new data dir is private (0700): it holds the database (transcripts, OCR text, window titles) and media
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # this process among all that share the store: names its leases, heartbeats and ingest links
        self.process_id = f"{settings.role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = open_store(settings.database_url, self.data_dir)
        self.media = open_media_store(settings.media_url, self.data_dir, settings.scratch_max_mb * 1024 ** 2)
        self.hub = Hub()
        self.notifier = open_notifier(self.store, self.hub)
        self.auth = Auth(self.store, self.data_dir, settings.api_key)
        self.api_key = self.auth.ensure_api_key()
        self.webhook_secret = self.auth.ensure_webhook_secret()
        self._url_key = bytes.fromhex(self.auth.server_secret(URL_KEY, lambda: secrets.token_hex(32)))
        self.outbox = Outbox(self.store, self.webhook_secret, settings.webhook_max_backoff_s,
                             settings.webhook_timeout_s, notifier=self.notifier)
        self.bus = EventBus(self.store, self.notifier, self.outbox)
        self.sessions = Sessions(self.store, self.bus)
        self.ingest = Ingest(self.store, self.sessions, self.media)
        self.ingest.notifier = self.notifier
        self.kernel = KernelEvents(self)   # cell fragments -> cell events
        self.ingest.listeners.append(self.kernel.on_fragment)
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
        return self._search

    def backends(self) -> dict:
        """What this process runs on (`vdbnb info`, /health)."""
        return {"store": {"kind": self.store.dialect, "location": redact_url(self.store.url)},
                "media": self.media.describe(), "notifier": self.notifier.kind, "role": self.settings.role,
                "process_id": self.process_id}

    # signed media URLs (players cannot send headers)
    def sign(self, path: str, ttl: float = 86400) -> str:
        exp = int(time.time() + ttl)
        sig = hmac.new(self._url_key, f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"exp={exp}&sig={sig}"

    def verify(self, path: str, exp: int, sig: str) -> bool:
        good = hmac.new(self._url_key, f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()[:32]
        return exp >= time.time() and hmac.compare_digest(good, sig or "")


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
