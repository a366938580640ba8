"""ASGI middleware: optional trailing slash, request body limits, security headers, and CORS for the client-token
calls a browser recorder makes (R1-R3 and fragment upload)."""
from __future__ import annotations

import json
import re

from ..media.fragments import MAX_FRAGMENT

def _reply(status: int, message: str, code: str):
    body = json.dumps({"success": False, "message": message, "error_code": code}).encode()

    async def send_it(send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return send_it


class EdgeMiddleware:
    """Paths work with and without a trailing slash; bodies over the limit get 413 before any handler runs:
    ``json_limit`` (``Settings.max_body_bytes``) for JSON, ``MAX_FRAGMENT`` for a fragment upload."""

    def __init__(self, app, json_limit: int):
        self.app = app
        self.json_limit = json_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):
            scope = dict(scope)
            scope["path"] = path.rstrip("/") or "/"
            scope["raw_path"] = scope["path"].encode()
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = MAX_FRAGMENT if scope["path"].endswith("/fragment") else self.json_limit
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                return await _reply(400, "invalid Content-Length header", "INVALID_REQUEST")(send)
            if n > limit:
                return await _reply(413, f"request body of {n} bytes is over the {limit}-byte limit",
                                    "PAYLOAD_TOO_LARGE")(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return msg

        sent_start = False

        async def tracking_send(msg):
            nonlocal sent_start
            if msg["type"] == "http.response.start":
                sent_start = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not sent_start:
                await _reply(413, f"request body is over the {limit}-byte limit", "PAYLOAD_TOO_LARGE")(send)


class _TooLarge(Exception):
    pass


# The calls a recorder makes with a client token (docs/ingest.md). A browser recorder on another origin (the
# notebook's page) makes them with fetch(): they answer CORS. The credential is the x-access-token header, never a
# cookie, so allowing any origin exposes nothing a page does not already hold; API-key routes stay same-origin.
CLIENT_TOKEN_PATHS = re.compile(r"^/capture/session/(start|(?!token$)[^/]+(/stop|/fragment)?)$")
CORS_HEADERS = [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"content-type")]


class ClientTokenCors:
    """CORS (and Private Network Access) for :data:`CLIENT_TOKEN_PATHS` only: preflights are answered here,
    responses get ``Access-Control-Allow-Origin: *``; no credentials are ever allowed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not CLIENT_TOKEN_PATHS.match(scope.get("path", "").rstrip("/")):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            out = CORS_HEADERS + [(b"access-control-allow-methods", b"GET, POST"),
                                  (b"access-control-allow-headers", b"x-access-token, content-type"),
                                  (b"access-control-max-age", b"600"), (b"content-length", b"0")]
            if headers.get(b"access-control-request-private-network") == b"true":
                out.append((b"access-control-allow-private-network", b"true"))
            await send({"type": "http.response.start", "status": 204, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            return

        async def cors_send(msg):
            if msg["type"] == "http.response.start":
                msg = dict(msg, headers=list(msg.get("headers") or []) + CORS_HEADERS)
            await send(msg)
        await self.app(scope, receive, cors_send)
