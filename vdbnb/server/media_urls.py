"""Signed media URLs (players cannot send headers): ``?exp=<epoch s>&sig=<HMAC-SHA256(key, path|exp)>``.

The key is 32 random bytes of its own, in the data dir file ``media_url_key`` (0600), never derived from any
other secret (the webhook secret is given to every webhook receiver). URLs live ``ttl`` seconds (default 1 h,
VDBNB_MEDIA_URL_TTL_S). ``rotate()`` writes a new key: every URL signed before stops working at once, in
this server and in any other process that reads the same data dir (the key file is re-read when it changes),
or, on a shared store (PostgreSQL), in every replica within a few seconds (the key is a ``server_secrets`` row).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from ..private_fs import tighten, write_private

PREFIX = "mk_"


class MediaSigner:
    """Signs and verifies media URLs. The key lives in ``path`` (one machine), or, when ``store`` is given (a
    store shared by several replicas), in its ``server_secrets`` row ``name`` so that every replica agrees and a
    rotation reaches all of them within ``STORE_REFRESH_S``."""

    STORE_REFRESH_S = 2.0

    def __init__(self, path: Path | None = None, ttl: float = 3600.0, store=None, name: str = "media_url_key"):
        self.path = Path(path) if path is not None else None
        self.store, self.name = store, name
        self.ttl = float(ttl)
        self._lock = threading.Lock()
        self._stamp: tuple | float | None = None
        self._key = b""
        if self.store is not None:
            from .store import now
            self.store.insert("server_secrets", {"name": name, "value": _new_key(), "created_at": now()},
                              ignore=True)
        elif not self.path.exists():
            self.rotate()
        else:
            tighten(self.path)

    def _current(self) -> bytes:
        with self._lock:
            if self.store is not None:
                if self._stamp is None or time.monotonic() - self._stamp > self.STORE_REFRESH_S:
                    row = self.store.one("SELECT value FROM server_secrets WHERE name=?", (self.name,))
                    self._key, self._stamp = _decode(row["value"], self.name), time.monotonic()
                return self._key
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._key, self._stamp = _decode(self.path.read_text().strip(), str(self.path)), stamp
            return self._key

    def rotate(self) -> None:
        """A new random key: every media URL signed with the old one is refused from now on."""
        if self.store is not None:
            self.store.execute("UPDATE server_secrets SET value=? WHERE name=?", (_new_key(), self.name))
            with self._lock:
                self._stamp = None
            return
        write_private(self.path, _new_key() + "\n")

    def _mac(self, path: str, exp: int) -> str:
        return hmac.new(self._current(), f"{path}|{exp}".encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, path: str, ttl: float | None = None) -> str:
        exp = int(time.time() + (self.ttl if ttl is None else ttl))
        return f"exp={exp}&sig={self._mac(path, exp)}"

    def verify(self, path: str, exp: int, sig: str) -> bool:
        return exp >= time.time() and hmac.compare_digest(self._mac(path, exp), sig or "")


def _new_key() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _decode(raw: str, where: str) -> bytes:
    if len(raw) == 64 and all(c in "0123456789abcdef" for c in raw):
        return bytes.fromhex(raw)  # a key written by vdbnb 0.2's first scale-out build
    if not raw.startswith(PREFIX):
        raise RuntimeError(f"{where} is not a media URL key (it should start with {PREFIX}); "
                           "delete it and restart the server to make a new one")
    return base64.urlsafe_b64decode(raw[len(PREFIX):] + "==")
