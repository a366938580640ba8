"""The MCP server: tools, resources and live updates over one vdbnb backend; stdio or streamable HTTP."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from .. import __version__
from .audit import Audit
from .backend import Backend
from .control import ControlTools
from .live import Follower, Resources, Subscribers
from .tools import ReadTools

log = logging.getLogger("vdbnb.mcp")
HTTP_PATH = "/mcp"
INSTRUCTIONS = """vdbnb captures this desktop (screens, microphone, system audio, and notebook cells when that \
channel is on) and makes it searchable. Use recent_context for "what just happened", search to find a moment \
(each hit has a playable clip), screen_now to see the screen, list_sessions / session_summary for past \
captures. Secrets are redacted and excluded windows never appear. Times in text are the user's local clock."""


def create_server(backend: Backend, transport: str = "stdio", allow_control: bool = False,
                  follow: bool = True, auth=None, token_verifier=None) -> MCPServer:
    """An MCPServer over ``backend``. ``transport`` names the caller in the tool-call log; ``follow`` reads
    the vdbnb websocket to send resource-updated notifications."""
    audit = Audit(backend, transport)
    bus = InMemorySubscriptionBus()
    subscribers = Subscribers(bus)
    control = ControlTools(backend, audit, allow_control)

    @asynccontextmanager
    async def lifespan(_app):
        async with anyio.create_task_group() as tg:
            if follow:
                tg.start_soon(Follower(backend, subscribers).run)
            try:
                yield {}
            finally:
                tg.cancel_scope.cancel()
                await anyio.to_thread.run_sync(control.stop)  # a capture an agent started ends with us

    mcp = MCPServer("vdbnb", title="vdbnb: what this desktop captured", version=__version__,
                    instructions=INSTRUCTIONS, lifespan=lifespan, subscriptions=bus,
                    auth=auth, token_verifier=token_verifier)
    ReadTools(backend, audit).register(mcp)
    control.register(mcp)
    Resources(backend).register(mcp)
    subscribers.register(mcp)
    return mcp


def run_stdio(backend: Backend, allow_control: bool = False) -> None:
    create_server(backend, "stdio", allow_control).run("stdio")


def http_app(backend: Backend, port: int, allow_control: bool = False, host: str = "127.0.0.1"):
    """The streamable HTTP app (Starlette): every request needs the API key or an agent token."""
    from mcp.server.auth.settings import AuthSettings

    from .auth import READ_SCOPE, AccessTokenHeader, VdbnbTokenVerifier
    auth = AuthSettings(issuer_url=backend.base_url, resource_server_url=None, required_scopes=[READ_SCOPE])
    mcp = create_server(backend, "http", allow_control, auth=auth, token_verifier=VdbnbTokenVerifier(backend))
    return AccessTokenHeader(mcp.streamable_http_app(streamable_http_path=HTTP_PATH, host=host))


def run_http(backend: Backend, port: int, allow_control: bool = False, host: str = "127.0.0.1",
             log_level: str = "warning") -> None:
    import uvicorn
    uvicorn.run(http_app(backend, port, allow_control, host), host=host, port=port, log_level=log_level)
