"""The ASGI app: FastAPI with VideoDB's envelopes, the capture and rtstream routes, background workers."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import Settings
from .asgi import ClientTokenCors, EdgeMiddleware
from .context import Context
from .errors import APIError
from .sessions import ACTIVE, FAILED, STARTING, STOPPED, STOPPING

log = logging.getLogger("vdbnb.server")


LINK_STALE_S = 3.0        # an ingest link whose replica has not said "still here" for this long is gone
HEARTBEAT_S = 1.0


def linked_sessions(ctx: Context) -> set[str]:
    """Sessions with an ingest websocket open on any live replica (their heartbeats are fresh)."""
    from .store import now
    local = {sid for sid, n in ctx.ingest.connections.items() if n > 0}
    if not ctx.shared:  # one process owns the store: its own sockets are all there is
        return local
    rows = ctx.store.all("SELECT DISTINCT session_id FROM ingest_links WHERE links > 0 AND heartbeat_at > ?",
                         (now() - LINK_STALE_S,))
    return {r["session_id"] for r in rows} | local


def check_recorders(ctx: Context, grace: float) -> None:
    """A recorder that vanished (no ingest link on any replica, no media) for `grace` seconds ends its session."""
    from .store import now
    rows = ctx.store.all("SELECT id, status, last_media_at FROM sessions WHERE status IN (?,?,?)",
                         (STARTING, ACTIVE, STOPPING))
    if not rows:
        return
    linked = linked_sessions(ctx)
    for r in rows:
        if r["id"] in linked or (r["last_media_at"] or 0) + grace > now():
            continue
        sid = r["id"]
        try:
            if r["status"] == STARTING:
                ctx.sessions.transition(sid, FAILED, error="recorder_lost: no media arrived after start")
            else:
                if r["status"] == ACTIVE:
                    ctx.store.update("sessions", "id", sid, error="recorder_lost")
                    ctx.sessions.transition(sid, STOPPING, data={"reason": "recorder_lost"})
                ctx.sessions.transition(sid, STOPPED, data={"reason": "recorder_lost"})
        except APIError:  # another replica (or a returning recorder) moved it first
            continue
        log.warning("session %s: recorder lost for %.0fs, session ended", sid, grace)


async def watchdog(ctx: Context, grace: float) -> None:
    """Runs in every replica; one at a time checks (the ``watchdog`` role), all keep their links' heartbeats."""
    role = None
    while True:
        await asyncio.sleep(0.5)
        try:
            await asyncio.to_thread(heartbeat, ctx)
            if role is None or not role.held():
                role = await asyncio.to_thread(ctx.store.try_lock, "watchdog")
            if role is not None:
                await asyncio.to_thread(check_recorders, ctx, grace)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watchdog error")


def heartbeat(ctx: Context) -> None:
    """Say which sessions this process holds ingest links for, and that this process is alive."""
    from .store import now
    t = now()
    if not ctx.shared or t - getattr(ctx, "_last_beat", 0.0) < HEARTBEAT_S:
        return
    ctx._last_beat = t
    for sid, n in list(ctx.ingest.connections.items()):
        if n > 0:
            ctx.store.upsert("ingest_links", {"session_id": sid, "replica": ctx.process_id, "links": n,
                                              "heartbeat_at": t}, key=("session_id", "replica"))
    register_process(ctx)


def register_process(ctx: Context, url: str | None = None) -> None:
    from .store import now
    row = {"id": ctx.process_id, "role": ctx.settings.role, "host": socket.gethostname(),
           "pid": os.getpid(), "heartbeat_at": now(), "health": process_health(ctx)}
    if url:
        row["url"] = url
    if not getattr(ctx, "_registered", False):
        row["started_at"] = now()
        ctx._registered = True
    ctx.store.upsert("processes", row, key=("id",))


def forget_process(ctx: Context) -> None:
    """A process that stops cleanly leaves no row behind (one that dies leaves stale heartbeats)."""
    if ctx.shared:
        ctx.store.execute("DELETE FROM processes WHERE id=?", (ctx.process_id,))
        ctx.store.execute("DELETE FROM ingest_links WHERE replica=?", (ctx.process_id,))


def pipelines_health(ctx: Context) -> dict | None:
    p = ctx.pipelines
    return p.health() if p is not None and getattr(p, "running", False) else None


def process_health(ctx: Context) -> dict:
    p = ctx.pipelines
    return {"pipelines": pipelines_health(ctx),
            "leases": p.leases.health() if p is not None and getattr(p, "running", False) else None,
            "webhook_dispatcher": ctx.outbox.dispatching,
            "exports": ctx.jobs.health(),
            "ingest_links": sum(ctx.ingest.connections.values())}


def create_app(settings: Settings) -> FastAPI:
    ctx = Context(settings)
    grace = settings.recorder_grace_s  # a lost recorder that returns within it resumes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .store import now
        ctx.hub.bind(asyncio.get_running_loop())
        await asyncio.to_thread(ctx.notifier.start)
        # sessions that were recording when the server went down get a fresh grace period
        await asyncio.to_thread(ctx.store.execute, "UPDATE sessions SET last_media_at=? WHERE status IN (?,?,?)",
                                (now(), STARTING, ACTIVE, STOPPING))
        ctx.outbox.start()
        await asyncio.to_thread(ctx.kernel.recover)   # cells stored just before a crash get their events
        wd = asyncio.create_task(watchdog(ctx, grace))
        from .retention import purge_loop
        retention = asyncio.create_task(purge_loop(ctx))  # expired tokens/tickets, old webhooks, retention_days
        if ctx.pipelines is not None and settings.runs_pipelines:
            ctx.pipelines.start()
        if settings.runs_exports:
            ctx.jobs.start()
        try:
            yield
        finally:
            wd.cancel()
            retention.cancel()
            await asyncio.to_thread(ctx.jobs.stop)
            if ctx.pipelines is not None:
                ctx.pipelines.stop()
            await ctx.outbox.stop()
            ctx.notifier.stop()
            await asyncio.to_thread(forget_process, ctx)

    app = FastAPI(title="vdbnb", version=__version__, lifespan=lifespan,
                  description="A VideoDB-compatible capture backend that runs on your machine. Authenticate "
                              "with `x-access-token: <API key>` (or a client token for the recorder calls).")
    app.state.ctx = ctx
    app.add_middleware(EdgeMiddleware, json_limit=settings.max_body_bytes)
    app.add_middleware(ClientTokenCors)   # outermost: preflights never reach the body limits or routes

    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg')}")
        return JSONResponse({"success": False, "message": "Invalid request: " + "; ".join(parts),
                             "error_code": "INVALID_REQUEST"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(e.status_code, "INVALID_REQUEST")
        msg = {404: "No such endpoint: check the path against /docs.",
               405: "Method not allowed on this path: check /docs."}.get(e.status_code, str(e.detail))
        return JSONResponse({"success": False, "message": msg, "error_code": code}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, e: Exception):
        log.exception("internal error")
        return JSONResponse({"success": False, "message": f"Internal server error ({type(e).__name__}); the "
                             "server log has the details.", "error_code": "ServerError"}, status_code=500)

    @app.get("/health", tags=["meta"])
    def health():
        from ..ai.engines import status as engines
        return {"success": True, "data": {"status": "ok", "version": __version__,
                                          "pipelines": pipelines_health(ctx),
                                          "ai": "on" if ctx.pipelines is not None else "off",
                                          "engines": engines(),
                                          "webhooks_pending": ctx.outbox.pending(),
                                          "webhook_dispatcher": ctx.outbox.dispatching,
                                          "webhooks_dead": ctx.outbox.dead(),
                                          "exports": ctx.jobs.health(),
                                          "ingest_links": sum(ctx.ingest.connections.values()),
                                          "backends": ctx.backends()}}

    from .routes_agent import router as agent_router
    from .routes_admin import router as admin_router
    from .routes_capture import router as capture_router
    app.include_router(capture_router)
    app.include_router(admin_router)
    try:
        from .routes_rtstream import router as rtstream_router
        app.include_router(rtstream_router)
    except ImportError as e:  # pragma: no cover - during bring-up only
        log.warning("rtstream routes unavailable: %s", e)
    app.include_router(agent_router)
    if settings.ai_enabled:  # role api: the helpers only (indexes, re-indexing); the workers run elsewhere
        try:
            from .. import ai
            from .pipelines import Pipelines
            ai.configure(settings)
            ctx.pipelines = Pipelines(ctx)
        except ImportError as e:
            log.warning("AI pipelines unavailable (%s); install vdbnb[ai]", e)
    return app
