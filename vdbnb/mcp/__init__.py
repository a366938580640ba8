"""``vdbnb mcp``: a Model Context Protocol server over what vdbnb captured, for AI agents (Claude, Cursor,
VS Code, Jupyter AI...), built on the official ``mcp`` SDK.

It is a client of the vdbnb server (``vdbnb.connect()``: the embedded one by default, ``VDBNB_URL`` /
``VDBNB_API_KEY`` otherwise). One job per module:

| module | job |
|---|---|
| ``backend.py`` | the vdbnb calls the tools need (search, events, sessions, frames, the tool-call log) |
| ``timeparse.py`` | ``since``/``until`` as an agent writes them ("15m", ISO 8601, epoch seconds) |
| ``privacy.py`` | the last pass before anything reaches the agent: secrets redacted, private items dropped |
| ``render.py`` | results as text an agent reads (times, channels, clips) |
| ``audit.py`` | who called which tool, logged as an ``agent`` event on the server |
| ``tools.py`` | the tools: search, recent_context, screen_now, list_sessions, session_summary |
| ``control.py`` | start_capture / stop_capture (only with ``--allow-control``) |
| ``live.py`` | resources of live sessions and their update notifications (driven by the server's websocket) |
| ``auth.py`` | the HTTP transport's credentials: the API key or an agent token |
| ``server.py`` | assembling the MCP server and running it over stdio or streamable HTTP |
| ``cli.py`` | ``vdbnb mcp [--http] [--port] [--allow-control]`` and ``vdbnb mcp token`` |
"""
from __future__ import annotations

__all__ = ["create_server"]


def __getattr__(name):  # lazy: `import vdbnb.mcp` does not import the SDK
    if name == "create_server":
        from .server import create_server
        return create_server
    raise AttributeError(name)
