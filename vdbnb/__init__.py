"""vdbnb: Jupyter-first real-time desktop capture for AI agents, VideoDB-compatible and offline by default."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import AuthenticationError, CaptureError, InvalidRequestError, SearchError, VideodbError  # noqa: E402

__all__ = ["__version__", "connect", "AuthenticationError", "InvalidRequestError", "SearchError",
           "VideodbError", "CaptureError", "load_ipython_extension", "CaptureClient", "CapturePanel"]


def __getattr__(name):  # lazy: importing vdbnb stays cheap, and no import cycles
    if name == "connect":
        from .api import connect
        return connect
    if name == "CaptureClient":
        from .capture import CaptureClient
        return CaptureClient
    if name == "CapturePanel":
        from .widgets import CapturePanel
        return CapturePanel
    raise AttributeError(name)


def load_ipython_extension(ipython):
    from .magics import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as _unload
    _unload(ipython)
