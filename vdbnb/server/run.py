"""`vdbnb serve`: bind (127.0.0.1 by default), publish server.json in the data dir, run uvicorn."""
from __future__ import annotations

import json
import logging
import os
import socket
import sys

from ..config import SERVER_FILE, Settings
from ..private_fs import restrict_umask, write_private


def serve(settings: Settings, log_level: str = "info", exit_with_owners: bool = False,
          idle_exit_s: float | None = None) -> None:
    """Run the server. ``exit_with_owners`` / ``idle_exit_s``: when it stops by itself (an embedded server;
    vdbnb/server/lifecycle.py)."""
    import uvicorn

    restrict_umask()  # backstop: whatever a library creates in this process is owner-only

    from .app import create_app
    from .lifecycle import ActivityMiddleware, Lifecycle

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    app = create_app(settings)
    ctx = app.state.ctx
    ctx.lifecycle = Lifecycle(ctx, exit_with_owners, idle_exit_s)
    app.add_middleware(ActivityMiddleware, lifecycle=ctx.lifecycle)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:
        raise SystemExit(f"vdbnb serve: cannot bind {settings.host}:{settings.port} ({e.strerror}); "
                         f"pick another port with --port, or stop the process using it") from None
    sock.listen(256)
    host, port = sock.getsockname()[:2]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    info = {"pid": os.getpid(), "url": url, "host": host, "port": port, "data_dir": str(ctx.data_dir)}
    path = ctx.data_dir / SERVER_FILE
    write_private(path, json.dumps(info))
    logging.getLogger("vdbnb.server").info("vdbnb server on %s (data dir %s)", url, ctx.data_dir)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, ws_max_size=32 * 1024 * 1024,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    def stop(_why: str) -> None:
        server.should_exit = True          # uvicorn's own graceful shutdown (lifespan: pipelines, webhooks)

    ctx.lifecycle.start(stop)
    try:
        server.run(sockets=[sock])
    finally:
        ctx.lifecycle.close()
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
