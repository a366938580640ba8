"""The browser recorder's way to the vdbnb server when it cannot reach it directly (the kernel, and its server,
run on another machine: JupyterHub, a remote Jupyter server, a container): the Jupyter server proxies the
recorder calls, and only those.

    {base_url}vdbnb/ingest/{port}/capture/session/start                 R1   (POST)
    {base_url}vdbnb/ingest/{port}/capture/session/{sid}                 R2   (GET)
    {base_url}vdbnb/ingest/{port}/capture/session/{sid}/stop            R3   (POST)
    {base_url}vdbnb/ingest/{port}/capture/session/{sid}/fragment        one fragment (POST)
    {base_url}vdbnb/ingest/{port}/capture/session/{sid}/ingest          the ingest websocket

Two locks on every request: the Jupyter session (the same authentication and ``execute``-on-``kernels``
authorisation as running code in a kernel: whoever passes could reach the port from a cell anyway), and the
vdbnb client token, which the browser sends as ``x-access-token`` (``?access_token=`` on the websocket, whose
``?token=`` is Jupyter's) and the proxy passes on as the ``x-access-token`` header. Nothing else is forwarded:
not Jupyter's cookies or ``Authorization`` header, not other paths of the vdbnb server (the API-key routes),
and only to ``127.0.0.1`` — the embedded server's address on the kernel's machine.
"""
from __future__ import annotations

import asyncio
import re

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import httpclient, web, websocket

UPSTREAM_HOST = "127.0.0.1"
PREFIX = "vdbnb/ingest"
MAX_MESSAGE = 16 * 1024 * 1024 + 64 * 1024        # one fragment (media.fragments.MAX_FRAGMENT) and its framing
REST = r"capture/session/(?:start|(?!token$)[^/]+(?:/stop|/fragment)?)"
SOCKET = r"capture/session/[^/]+/ingest"


def _upstream(port: str, path: str) -> str:
    p = int(port)
    if not 0 < p < 65536:
        raise web.HTTPError(400, "port out of range")
    return f"{UPSTREAM_HOST}:{p}/{path}"


class _Authorized:
    """Jupyter authentication + the ``execute``/``kernels`` permission (as for running code)."""

    def _allowed(self) -> bool:
        user = self.current_user
        if user is None:
            return False
        authorizer = self.settings.get("authorizer")
        return authorizer is None or bool(authorizer.is_authorized(self, user, "execute", "kernels"))


class IngestRestProxy(_Authorized, JupyterHandler):
    async def _forward(self, port: str, path: str) -> None:
        if not self._allowed():
            raise web.HTTPError(403, "log in to Jupyter (and be allowed to run kernels) to use the vdbnb proxy")
        url = "http://" + _upstream(port, path)
        if self.request.query:
            url += "?" + self.request.query
        headers = {k: v for k, v in (("x-access-token", self.request.headers.get("x-access-token")),
                                     ("content-type", self.request.headers.get("content-type"))) if v}
        body = self.request.body if self.request.method == "POST" else None
        try:
            r = await httpclient.AsyncHTTPClient().fetch(
                url, method=self.request.method, headers=headers, body=body, raise_error=False,
                request_timeout=60, follow_redirects=False)
        except OSError as e:
            self.set_status(502)
            self.finish({"success": False, "error_code": "SERVER_UNREACHABLE",
                         "message": f"the Jupyter server cannot reach the vdbnb server on port {port}: {e}; is it "
                                    "running on the kernel's machine (vdbnb.connect() in the notebook)?"})
            return
        self.set_status(r.code if r.code != 599 else 502)
        self.set_header("content-type", r.headers.get("content-type", "application/json"))
        self.finish(r.body or b"")

    async def get(self, port: str, path: str) -> None:
        await self._forward(port, path)

    async def post(self, port: str, path: str) -> None:
        await self._forward(port, path)


class IngestSocketProxy(_Authorized, WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """Relays binary fragments up and JSON acks down, one upstream connection per browser connection; either
    side closing closes the other (the browser recorder then reconnects and resends what was not acked)."""

    upstream: websocket.WebSocketClientConnection | None = None

    def set_default_headers(self) -> None:  # JupyterHandler's CSP headers make no sense on a websocket
        pass

    @property
    def max_message_size(self) -> int:
        return MAX_MESSAGE

    async def get(self, port: str, path: str, *args, **kwargs) -> None:
        if not self._allowed():
            raise web.HTTPError(403, "log in to Jupyter (and be allowed to run kernels) to use the vdbnb proxy")
        token = self.get_argument("access_token", None) or self.request.headers.get("x-access-token")
        if not token:
            raise web.HTTPError(401, "no vdbnb client token (?access_token=st-...)")
        req = httpclient.HTTPRequest("ws://" + _upstream(port, path), headers={"x-access-token": token},
                                     connect_timeout=10, request_timeout=20)
        try:
            self.upstream = await websocket.websocket_connect(req, max_message_size=MAX_MESSAGE)
        except (OSError, websocket.WebSocketError, httpclient.HTTPClientError) as e:
            code = getattr(e, "code", 502)
            raise web.HTTPError(code if code in (401, 403, 404) else 502,
                                f"the vdbnb server refused or is unreachable: {e}") from None
        await super().get(port, path, *args, **kwargs)

    def open(self, *args, **kwargs) -> None:
        super().open(*args, **kwargs)                   # WebSocketMixin: keep-alive pings to the browser
        self._pump = asyncio.ensure_future(self._down())

    async def _down(self) -> None:
        up = self.upstream
        while up is not None:
            msg = await up.read_message()
            if msg is None:
                break
            try:
                await self.write_message(msg, binary=isinstance(msg, bytes))
            except websocket.WebSocketClosedError:
                break
        self.close()

    async def on_message(self, message) -> None:
        if self.upstream is None:
            return
        try:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self.close()

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


def handlers(base_url: str) -> list[tuple[str, type]]:
    base = base_url.rstrip("/") + "/" + PREFIX
    return [(rf"{re.escape(base)}/(\d+)/({SOCKET})", IngestSocketProxy),
            (rf"{re.escape(base)}/(\d+)/({REST})", IngestRestProxy)]
