"""API keys (``sk-…``), client tokens (``st-…``), agent tokens (``at-…``) and websocket tickets; all stored as
SHA-256 hashes.

Agent tokens are for AI agents (``vdbnb mcp``): they read what was captured (sessions, events, transcripts,
search, the latest screen frame) and log their tool calls, and can do nothing else, so an agent never needs
the API key.

The secrets are 256-bit random values, so a plain SHA-256 is a sound at-rest hash (no dictionary to
guess from); comparisons go through the hash index, never through the clear value.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..config import KEY_FILE, WEBHOOK_SECRET_FILE
from ..private_fs import private_dir, tighten, write_private
from .errors import forbidden, unauthorized
from .store import Store, now

CAPTURE_SCOPE = "capture"
AGENT_SCOPE = "agent"       # read-only: what an AI agent may see (plus logging its own tool calls)
MAX_TOKEN_TTL = 30 * 86400


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id(secret: str) -> str:
    """A short public id of a key or token (its kind prefix and 8 hex of its hash): who, in logs."""
    return secret[:3] + digest(secret)[:8]


def write_secret_file(path: Path, value: str) -> None:
    private_dir(path.parent)
    write_private(path, value + "\n")


def ensure_key_file(path: Path, nbytes: int = 32) -> bytes:
    """A random key kept in a 0600 file (made on first use): for keys that cannot be stored as hashes."""
    if path.exists():
        tighten(path)
        raw = path.read_text().strip()
        if raw:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    raw = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
    write_secret_file(path, raw)
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


@dataclass(frozen=True)
class Principal:
    kind: str                    # "api_key" | "client_token" | "agent_token"
    collection_id: str | None    # client and agent tokens are bound to one collection
    scope: str | None = None
    token_id: str | None = None  # a short public id of a token (never the token): who, in logs
    expires_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "api_key"

    @property
    def can_read(self) -> bool:
        return self.kind == "api_key" or (self.kind == "agent_token" and self.scope == AGENT_SCOPE)


class Auth:
    def __init__(self, store: Store, data_dir: Path, api_key: str | None = None):
        self.store = store
        self.data_dir = data_dir
        self.preset_key = api_key  # Settings.api_key (VDBNB_API_KEY): the key to create on first start

    # ------------------------------------------------------------------ bootstrap
    @property
    def shared(self) -> bool:
        """Several processes share the store (PostgreSQL): server secrets live in it, not in data dir files."""
        return self.store.dialect == "postgresql"

    def ensure_api_key(self) -> str | None:
        """Create the API key on first start (or take VDBNB_API_KEY); keep it in a 0600 file. With a shared
        store only the replica that creates the first key writes it to its data dir (set VDBNB_API_KEY on every
        replica to use your own); the others just check keys against the store."""
        key_path = self.data_dir / KEY_FILE
        key = self.preset_key or (key_path.read_text().strip() if key_path.exists() else "")
        if not key and self.shared and self.store.one("SELECT id FROM api_keys WHERE revoked_at IS NULL"):
            return None
        if not key:
            key = "sk-" + secrets.token_urlsafe(32)
        if not key_path.exists() or key_path.read_text().strip() != key:
            write_secret_file(key_path, key)
        os.chmod(key_path, 0o600)
        h = digest(key)
        if not self.store.one("SELECT id FROM api_keys WHERE key_hash=?", (h,)):
            self.store.insert("api_keys", {"id": "key-" + secrets.token_hex(6), "key_hash": h,
                                           "prefix": key[:6], "created_at": now()})
        return key

    def ensure_webhook_secret(self) -> str:
        return self.server_secret(WEBHOOK_SECRET_FILE,
                                  lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())

    def server_secret(self, name: str, make) -> str:
        """A server secret, made once by ``make()`` (each secret is its own random value, none derived from
        another): a 0600 file in the data dir, or a row of ``server_secrets`` when the store is shared, so that
        every replica agrees."""
        if self.shared:
            self.store.insert("server_secrets", {"name": name, "value": make(), "created_at": now()}, ignore=True)
            return self.store.one("SELECT value FROM server_secrets WHERE name=?", (name,))["value"]
        path = self.data_dir / name
        if path.exists():
            os.chmod(path, 0o600)
            return path.read_text().strip()
        secret = make()
        write_secret_file(path, secret)
        return secret

    # ------------------------------------------------------------------ tokens
    def _mint(self, prefix: str, scope: str, collection_id: str, expires_in: int, user_id: str | None) -> dict:
        token = prefix + secrets.token_urlsafe(32)
        t = now()
        self.store.insert("client_tokens", {"token_hash": digest(token), "collection_id": collection_id,
                                            "scope": scope, "user_id": user_id, "created_at": t,
                                            "expires_at": t + expires_in})
        return {"token": token, "expires_in": expires_in, "expires_at": int(t + expires_in)}

    def mint_client_token(self, collection_id: str, expires_in: int, user_id: str | None = None) -> dict:
        return self._mint("st-", CAPTURE_SCOPE, collection_id, expires_in, user_id)

    def mint_agent_token(self, collection_id: str, expires_in: int, name: str | None = None) -> dict:
        """A read-only token for an AI agent (``at-…``): sessions, events, search, frames; nothing else."""
        d = self._mint("at-", AGENT_SCOPE, collection_id, expires_in, name)
        return dict(d, token_id=token_id(d["token"]), scope=AGENT_SCOPE)

    def mint_ws_ticket(self, collection_id: str, ttl: float = 60.0) -> str:
        ticket = "wst-" + secrets.token_urlsafe(24)
        t = now()
        self.store.insert("ws_tickets", {"ticket_hash": digest(ticket), "collection_id": collection_id,
                                         "created_at": t, "expires_at": t + ttl})
        return ticket

    def check_ws_ticket(self, ticket: str | None) -> str:
        if not ticket:
            raise unauthorized("websocket URL has no ticket: get a fresh URL from GET collection/{id}/websocket")
        with self.store.transaction() as st:  # single use: the ticket is gone once it opened a websocket
            row = st.one("SELECT collection_id, expires_at FROM ws_tickets WHERE ticket_hash=?", (digest(ticket),))
            if row:
                st.execute("DELETE FROM ws_tickets WHERE ticket_hash=?", (digest(ticket),))
        if not row or row["expires_at"] < now():
            raise unauthorized("websocket ticket unknown, used or expired (a websocket URL opens one connection, "
                               "within a minute): get a fresh URL from GET collection/{id}/websocket")
        return row["collection_id"]

    # ------------------------------------------------------------------ requests
    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise unauthorized("No access token: send your API key (or a client token) in the "
                               "x-access-token header. `vdbnb info` shows where the key is.", "MISSING_TOKEN")
        token = token.strip()
        h = digest(token)
        if token.startswith(("st-", "at-")):
            agent = token.startswith("at-")
            mint = "generate_agent_token() or `vdbnb mcp token`" if agent else "generate_client_token()"
            row = self.store.one("SELECT collection_id, scope, expires_at FROM client_tokens WHERE token_hash=?",
                                 (h,))
            if not row or (row["scope"] == AGENT_SCOPE) != agent:
                raise unauthorized(f"Invalid {'agent' if agent else 'client'} token: mint a new one with {mint}.")
            if row["expires_at"] < now():
                raise unauthorized(f"{'Agent' if agent else 'Client'} token expired: mint a new one with {mint}.",
                                   "TokenExpired")
            return Principal("agent_token" if agent else "client_token", row["collection_id"], row["scope"],
                             token_id(token), row["expires_at"])
        if self.store.one("SELECT id FROM api_keys WHERE key_hash=? AND revoked_at IS NULL", (h,)):
            return Principal("api_key", None, token_id=token_id(token))
        raise unauthorized("Invalid API key: check VIDEO_DB_API_KEY / VDBNB_API_KEY or the key file shown "
                           "by `vdbnb info`.")

    @staticmethod
    def require_admin(p: Principal) -> None:
        if p.kind == "agent_token":
            raise forbidden("An agent token can only read what was captured (sessions, events, search, frames); "
                            "this call needs the API key.", "AGENT_TOKEN_NOT_ALLOWED")
        if not p.is_admin:
            raise forbidden("A client token can only start, poll, stop and upload a capture session; "
                            "use the API key on your backend for this call.", "CLIENT_TOKEN_NOT_ALLOWED")

    @staticmethod
    def require_reader(p: Principal) -> None:
        """The API key, or an agent token (read-only)."""
        if not p.can_read:
            raise forbidden("A client token can only start, poll, stop and upload a capture session; "
                            "use the API key (or an agent token to read) for this call.", "CLIENT_TOKEN_NOT_ALLOWED")

    @staticmethod
    def require_collection(p: Principal, collection_id: str) -> None:
        if p.kind in ("client_token", "agent_token") and p.collection_id != collection_id:
            raise forbidden(f"This {p.kind.replace('_', ' ')} belongs to another collection.", "WRONG_COLLECTION")

    @staticmethod
    def require_capture(p: Principal) -> None:
        """The recorder's calls (start, poll, stop, upload): the API key or a client token, never an agent's."""
        if p.kind == "agent_token":
            raise forbidden("An agent token cannot start, stop or upload a capture: it only reads what was "
                            "captured. Use a client token from generate_client_token().", "AGENT_TOKEN_NOT_ALLOWED")
