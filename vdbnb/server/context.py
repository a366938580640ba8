"""The server's parts, wired once: store, auth, bus, sessions, ingest, media, pipelines."""
from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

from fastapi import Request

from ..config import Settings
from .auth import Auth, Principal
from .bus import EventBus
from .hub import Hub
from .ingest import Ingest
from .kernel import KernelEvents
from .sessions import Sessions
from .store import Store, now
from .webhooks import Outbox

DEFAULT_COLLECTION = "default"


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        # a new data dir is private (0700): it holds the database (transcripts, OCR text, window titles) and media
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = Store(self.data_dir / "vdbnb.sqlite3")
        self.auth = Auth(self.store, self.data_dir, settings.api_key)
        self.api_key = self.auth.ensure_api_key()
        self.webhook_secret = self.auth.ensure_webhook_secret()
        self.hub = Hub()
        self.outbox = Outbox(self.store, self.webhook_secret, settings.webhook_max_backoff_s,
                             settings.webhook_timeout_s)
        self.bus = EventBus(self.store, self.hub, self.outbox)
        self.sessions = Sessions(self.store, self.bus)
        self.ingest = Ingest(self.store, self.sessions, self.data_dir / "media")
        self.kernel = KernelEvents(self)   # cell fragments -> cell events
        self.ingest.listeners.append(self.kernel.on_fragment)
        self.exports_dir = self.data_dir / "exports"
        self._url_key = hashlib.sha256(("url-signing:" + self.webhook_secret).encode()).digest()
        self.pipelines = None  # set by app factory when AI is enabled
        self.lifecycle = None  # set by serve(): when an embedded server exits by itself (lifecycle.py)
        self._search = None
        if not self.store.one("SELECT id FROM collections WHERE id=?", (DEFAULT_COLLECTION,)):
            self.store.insert("collections", {"id": DEFAULT_COLLECTION, "name": "Default Collection",
                                              "description": "created by vdbnb", "created_at": now()})

    def search_index(self):
        """The hybrid search index (its own SQLite file), opened on first use."""
        if self._search is None:
            from .search import SearchIndex
            self._search = SearchIndex(self.data_dir / "search.sqlite3")
        return self._search

    # signed media URLs (players cannot send headers)
    def sign(self, path: str, ttl: float = 86400) -> str:
        exp = int(time.time() + ttl)
        sig = hmac.new(self._url_key, f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"exp={exp}&sig={sig}"

    def verify(self, path: str, exp: int, sig: str) -> bool:
        good = hmac.new(self._url_key, f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()[:32]
        return exp >= time.time() and hmac.compare_digest(good, sig or "")


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
