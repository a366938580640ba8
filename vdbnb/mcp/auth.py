"""Credentials of the streamable HTTP transport, through the SDK's auth hooks (a ``TokenVerifier``).

A request must carry the vdbnb API key or a read-only agent token (``at-…``, from ``vdbnb mcp token``), as
``Authorization: Bearer <credential>`` (what MCP clients send) or ``x-access-token: <credential>`` (as the
vdbnb/VideoDB API). Anything else is answered 401 before it reaches the MCP server. The vdbnb server is the
one that knows the credentials: it is asked (``GET agent/whoami``), and its answer kept for a short while.
"""
from __future__ import annotations

import hashlib
import time

import anyio
from mcp.server.auth.provider import AccessToken

from ..errors import AuthenticationError, InvalidRequestError
from .backend import Backend
from .control import CONTROL_SCOPE

READ_SCOPE = "vdbnb:read"
CACHE_S = 30.0
CACHE_MAX = 1024  # answers kept at most (a flood of made-up tokens cannot grow it without bound)


class VdbnbTokenVerifier:
    """The SDK's ``TokenVerifier``: the API key reads and controls; an agent token only reads."""

    def __init__(self, backend: Backend):
        self.b = backend
        self._cache: dict[str, tuple[float, AccessToken | None]] = {}

    async def verify_token(self, token: str) -> AccessToken | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(key)
        if hit and hit[0] > time.time():
            return hit[1]
        try:
            who = await anyio.to_thread.run_sync(lambda: self.b.whoami(token))
        except (AuthenticationError, InvalidRequestError):
            who = None
        at = None
        if who and who.get("can_read"):
            scopes = [READ_SCOPE] + ([CONTROL_SCOPE] if who.get("kind") == "api_key" else [])
            exp = who.get("expires_at")
            at = AccessToken(token=token, client_id=f"{who.get('kind')}:{who.get('token_id')}", scopes=scopes,
                             expires_at=int(exp) if exp else None)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (time.time() + CACHE_S, at)
        return at


class AccessTokenHeader:
    """ASGI middleware: ``x-access-token: X`` is read as ``Authorization: Bearer X`` (when no Authorization
    header is sent), so the VideoDB-style header works too."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            headers = list(scope.get("headers") or [])
            names = {k.lower() for k, _ in headers}
            if b"authorization" not in names:
                tok = next((v for k, v in headers if k.lower() == b"x-access-token"), None)
                if tok:
                    scope = dict(scope, headers=headers + [(b"authorization", b"Bearer " + tok)])
        await self.app(scope, receive, send)
