"""The ASGI app: FastAPI with VideoDB's envelopes, the capture and rtstream routes, background workers."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import Settings
from .asgi import EdgeMiddleware
from .context import Context
from .errors import APIError
from .sessions import ACTIVE, FAILED, STARTING, STOPPED, STOPPING

log = logging.getLogger("vdbnb.server")


def end_lost_sessions(ctx: Context, grace: float) -> None:
    """End every recording session whose recorder vanished (no ingest link, no media) for ``grace`` seconds.
    Blocking (SQLite): the watchdog runs it off the event loop."""
    from .store import now
    rows = ctx.store.all("SELECT id, status, last_media_at FROM sessions WHERE status IN (?,?,?)",
                         (STARTING, ACTIVE, STOPPING))
    for r in rows:
        if ctx.ingest.connections.get(r["id"], 0) > 0:
            continue
        if (r["last_media_at"] or 0) + grace > now():
            continue
        sid = r["id"]
        if r["status"] == STARTING:
            ctx.sessions.transition(sid, FAILED, error="recorder_lost: no media arrived after start")
        else:
            if r["status"] == ACTIVE:
                ctx.store.update("sessions", "id", sid, error="recorder_lost")
                ctx.sessions.transition(sid, STOPPING, data={"reason": "recorder_lost"})
            ctx.sessions.transition(sid, STOPPED, data={"reason": "recorder_lost"})
        log.warning("session %s: recorder lost for %.0fs, session ended", sid, grace)


async def watchdog(ctx: Context, grace: float) -> None:
    """Every 0.5 s, :func:`end_lost_sessions` in a worker thread."""
    while True:
        await asyncio.sleep(0.5)
        try:
            await asyncio.to_thread(end_lost_sessions, ctx, grace)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watchdog error")


def create_app(settings: Settings) -> FastAPI:
    ctx = Context(settings)
    grace = settings.recorder_grace_s  # a lost recorder that returns within it resumes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .store import now
        ctx.hub.bind(asyncio.get_running_loop())
        # sessions that were recording when the server went down get a fresh grace period
        await asyncio.to_thread(ctx.store.execute, "UPDATE sessions SET last_media_at=? WHERE status IN (?,?,?)",
                                (now(), STARTING, ACTIVE, STOPPING))
        ctx.outbox.start()
        await asyncio.to_thread(ctx.kernel.recover)   # cells stored just before a crash get their events
        wd = asyncio.create_task(watchdog(ctx, grace))
        if ctx.pipelines is not None:
            ctx.pipelines.start()
        try:
            yield
        finally:
            wd.cancel()
            if ctx.pipelines is not None:
                ctx.pipelines.stop()
            await ctx.outbox.stop()

    app = FastAPI(title="vdbnb", version=__version__, lifespan=lifespan,
                  description="A VideoDB-compatible capture backend that runs on your machine. Authenticate "
                              "with `x-access-token: <API key>` (or a client token for the recorder calls).")
    app.state.ctx = ctx
    app.add_middleware(EdgeMiddleware, json_limit=settings.max_body_bytes)

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
                                          "pipelines": ctx.pipelines.health() if ctx.pipelines else None,
                                          "ai": "on" if ctx.pipelines is not None else "off",
                                          "engines": engines(),
                                          "webhooks_pending": ctx.outbox.pending()}}

    from .routes_agent import router as agent_router
    from .routes_capture import router as capture_router
    app.include_router(capture_router)
    try:
        from .routes_rtstream import router as rtstream_router
        app.include_router(rtstream_router)
    except ImportError as e:  # pragma: no cover - during bring-up only
        log.warning("rtstream routes unavailable: %s", e)
    app.include_router(agent_router)
    if settings.ai_enabled:
        try:
            from .. import ai
            from .pipelines import Pipelines
            ai.configure(settings)
            ctx.pipelines = Pipelines(ctx)
        except ImportError as e:
            log.warning("AI pipelines unavailable (%s); install vdbnb[ai]", e)
    return app
