"""``vdbnb mcp``: run the MCP server (stdio by default; ``--http`` for streamable HTTP on 127.0.0.1), or mint
a read-only agent token (``vdbnb mcp token``)."""
from __future__ import annotations

import argparse
import logging
import sys

from ..config import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vdbnb mcp", description="An MCP server over what vdbnb captured (search, recent context, the screen "
        "now, sessions), for Claude, Cursor, VS Code and other agents. stdio by default.")
    p.add_argument("--http", action="store_true", help="serve the streamable HTTP transport on 127.0.0.1 instead of "
                   "stdio; every request needs the API key or an agent token (Authorization: Bearer …)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default $VDBNB_MCP_PORT, else 8766)")
    p.add_argument("--allow-control", action="store_true", help="let agents start and stop captures "
                   "(start_capture/stop_capture); off by default")
    p.add_argument("--url", default=None, help="a running vdbnb server (default $VDBNB_URL, else the embedded one)")
    p.add_argument("--data-dir", default=None, help="data dir of the embedded server (default $VDBNB_DATA_DIR)")
    p.add_argument("--log-level", default="warning")
    return p


def _token_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vdbnb mcp token", description="Mint a read-only agent token (at-…) for an "
                                "MCP client: it reads what was captured and can do nothing else.")
    p.add_argument("--expires-in", type=int, default=30 * 86400, help="seconds (default 30 days, the maximum)")
    p.add_argument("--name", default=None, help="a name to remember it by (e.g. claude-desktop)")
    p.add_argument("--url", default=None)
    p.add_argument("--data-dir", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        import mcp  # noqa: F401
    except ImportError:
        print("vdbnb mcp needs the MCP SDK: pip install 'vdbnb[mcp]' (or pip install 'mcp>=2.3,<3')",
              file=sys.stderr)
        return 2
    from .backend import Backend
    if args[:1] == ["token"]:
        a = _token_parser().parse_args(args[1:])
        b = Backend.connect(a.url, data_dir=a.data_dir)
        print(b.conn.generate_agent_token(a.expires_in, a.name))
        return 0
    a = _parser().parse_args(args)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,  # stdout is the stdio transport
                        format="vdbnb mcp %(levelname)s %(message)s")
    try:
        settings = Settings.from_env(mcp_port=a.port)
        b = Backend.connect(a.url, data_dir=a.data_dir)
        b.whoami()  # fail now, with the reason, rather than on the first tool call
    except SettingsError as e:
        print(f"vdbnb mcp: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        print(f"vdbnb mcp: cannot use the vdbnb server: {e}", file=sys.stderr)
        return 2
    from .server import run_http, run_stdio
    if a.http:
        port = settings.mcp_port
        print(f"vdbnb mcp: streamable HTTP on http://127.0.0.1:{port}/mcp (Authorization: Bearer <API key or "
              f"agent token>){'; capture control allowed' if a.allow_control else ''}", file=sys.stderr)
        run_http(b, port, a.allow_control, log_level=a.log_level)
    else:
        run_stdio(b, a.allow_control)
    return 0
