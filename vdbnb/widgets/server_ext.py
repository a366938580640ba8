"""Jupyter server extension: turn off Nagle's algorithm on kernel websockets, and proxy the browser recorder's
calls to the vdbnb server (:mod:`vdbnb.widgets.ingest_proxy`) for notebooks whose kernel runs elsewhere.

jupyter_server (2.x, through tornado) leaves TCP_NODELAY off on the kernel websocket. A cell's reply is several
small frames (status, execute_input, result, status); with Nagle on, each frame after the first waits for the
browser's delayed ACK (~40 ms on Linux). Measured on this box: a trivial cell's kernel round trip through the
server drops from ~44 ms to a few ms with this extension; live widget messages (thumbnails, meters) flow
without 40 ms clumping too.

Enable: ``jupyter server extension enable vdbnb.widgets.server_ext`` (the vdbnb wheel ships a config file that
does it), or ``--ServerApp.jpserver_extensions="{'vdbnb.widgets.server_ext': True}"``.
"""
from __future__ import annotations

import functools

_PATCHED = "_vdbnb_nodelay"


def patch_kernel_websocket() -> bool:
    try:
        from jupyter_server.services.kernels.websocket import KernelWebsocketHandler
    except ImportError:
        return False
    if getattr(KernelWebsocketHandler, _PATCHED, False):
        return True
    orig_open = KernelWebsocketHandler.open

    @functools.wraps(orig_open)
    async def open(self, *args, **kwargs):  # noqa: A001 - tornado's name
        try:
            self.set_nodelay(True)
        except Exception:  # noqa: BLE001 - never break the websocket over an optimisation
            pass
        return await orig_open(self, *args, **kwargs)

    KernelWebsocketHandler.open = open
    setattr(KernelWebsocketHandler, _PATCHED, True)
    return True


def _jupyter_server_extension_points():
    return [{"module": "vdbnb.widgets.server_ext"}]


def _load_jupyter_server_extension(serverapp) -> None:
    ok = patch_kernel_websocket()
    serverapp.log.info("vdbnb: kernel websockets with TCP_NODELAY %s", "on" if ok else "unavailable")
    from vdbnb.widgets.ingest_proxy import PREFIX, handlers
    web_app = serverapp.web_app
    web_app.add_handlers(".*$", handlers(web_app.settings.get("base_url", "/")))
    serverapp.log.info("vdbnb: browser-recorder proxy at %s%s/<port>/capture/session/…",
                       web_app.settings.get("base_url", "/"), PREFIX)


load_jupyter_server_extension = _load_jupyter_server_extension  # older servers
