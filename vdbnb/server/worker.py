"""`vdbnb worker`: the AI pipelines (transcripts, indexes, alerts, search documents) of every stream and the
exports (session and stream exports, clips: server/jobs.py), beside
any number of `vdbnb serve --role api` replicas sharing the same store and media (docs/scale-out.md).

Streams are shared out between workers by leases (pipelines/leases.py); a worker is also a candidate for the
webhook dispatcher role. It serves ``/health`` (its pipelines, leases, roles) on its own port.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import asynccontextmanager

from ..config import Settings


def create_worker_app(settings: Settings):
    from fastapi import FastAPI

    from .. import __version__
    from .app import forget_process, heartbeat, process_health
    from .context import Context
    from .pipelines import Pipelines

    from .. import ai
    settings = settings.replace(role="worker")
    ai.configure(settings)
    ctx = Context(settings)
    ctx.pipelines = Pipelines(ctx)

    async def beat():
        while True:
            await asyncio.sleep(0.5)
            try:
                await asyncio.to_thread(heartbeat, ctx)
            except asyncio.CancelledError:
                raise
            except Exception:
                logging.getLogger("vdbnb.worker").exception("heartbeat failed")

    @asynccontextmanager
    async def lifespan(app):
        ctx.hub.bind(asyncio.get_running_loop())
        await asyncio.to_thread(ctx.notifier.start)
        ctx.outbox.start()
        ctx.pipelines.start()
        ctx.jobs.start()
        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(ctx.jobs.stop)
            ctx.pipelines.stop()
            await ctx.outbox.stop()
            ctx.notifier.stop()
            await asyncio.to_thread(forget_process, ctx)

    app = FastAPI(title="vdbnb worker", version=__version__, lifespan=lifespan)
    app.state.ctx = ctx

    @app.get("/health")
    def health():
        return {"success": True, "data": {"status": "ok", "version": __version__, "role": "worker",
                                          **process_health(ctx), "backends": ctx.backends()}}
    return app


def run_worker(settings: Settings, host: str = "127.0.0.1", port: int = 0, log_level: str = "info") -> None:
    import socket

    import uvicorn
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    app = create_worker_app(settings)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    h, p = sock.getsockname()[:2]
    logging.getLogger("vdbnb.worker").info("vdbnb worker %s: health on http://%s:%s/health",
                                           app.state.ctx.process_id, h, p)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                          timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
