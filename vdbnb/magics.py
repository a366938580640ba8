"""IPython extension: ``%load_ext vdbnb``.

- ``%vdbnb status``          — server, API key source, capture sessions (connects lazily)
- ``%vdbnb search QUERY``    — search what was said or shown; returns a DataFrame
- ``%vdbnb panel``           — show a :class:`~vdbnb.widgets.CapturePanel`
- ``%vdbnb help``
- ``%%vdbnb_private``        — (first line of a cell) the kernel channel stores only "a private cell ran"
- ``%vdbnb_private on|off``  — every following cell is private (``off`` ends it); no argument: the state

Also registers HTML reprs for vdbnb objects that lack one (events, capture sessions). Loading twice is harmless.
"""
from __future__ import annotations

import html
import shlex
from typing import Any

_STATE: dict[str, Any] = {"conn": None}
_FORMATTED = [("vdbnb.events", "Event"), ("vdbnb.api.session", "CaptureSession")]

HELP = """%vdbnb status          server, capture sessions
%vdbnb search QUERY    search transcripts and indexes (DataFrame; the raw result is in _vdbnb_search)
%vdbnb panel           live capture panel
%vdbnb connect [URL]   (re)connect; no URL = the embedded server
%%vdbnb_private        (a cell's first line) the kernel channel keeps only "a private cell ran"
%vdbnb_private on|off  every following cell private / back to normal (a `vdbnb-private` cell tag works too)"""


def _connection(url: str | None = None, fresh: bool = False):
    if _STATE["conn"] is None or fresh or url:
        try:
            from vdbnb.api import connect
        except ImportError as e:  # the backend client is not there in this build
            raise RuntimeError(f"vdbnb.connect() is not available ({e}); update vdbnb.") from e
        _STATE["conn"] = connect(base_url=url) if url else connect()
    return _STATE["conn"]


def _table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')) if r.get(c) is not None else '')}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def event_html(ev: Any) -> str:
    row = {k: v for k, v in ev.row().items() if v not in (None, {}, "")}
    return "<div><b>vdbnb Event</b>" + _table([row], list(row)) + "</div>"


def session_html(s: Any) -> str:
    cols = ["id", "status", "end_user_id", "collection_id", "exported_video_id"]
    row = {c: getattr(s, c, None) for c in cols}
    streams = getattr(s, "rtstreams", None) or []
    extra = ""
    if streams:
        srows = [{"id": getattr(r, "id", None), "name": getattr(r, "name", None),
                  "channel_id": getattr(r, "channel_id", None), "status": getattr(r, "status", None)} for r in streams]
        extra = "<div><small>rtstreams</small>" + _table(srows, ["id", "name", "channel_id", "status"]) + "</div>"
    return "<div><b>CaptureSession</b>" + _table([row], cols) + extra + "</div>"


def _status_html(conn: Any) -> str:
    parts = [f"<b>vdbnb</b> → <code>{html.escape(str(getattr(conn, 'base_url', conn)))}</code>"]
    try:
        health = conn.health()
        parts.append("health: " + html.escape(", ".join(f"{k}={v}" for k, v in dict(health).items())))
    except Exception as e:  # noqa: BLE001
        parts.append(f"<span style='color:#b91c1c'>health check failed: {html.escape(str(e))}. What to do: start "
                     "the server (<code>vdbnb serve</code>) or check VDBNB_URL / VDBNB_API_KEY.</span>")
    try:
        sessions = conn.list_capture_sessions()
        rows = [{"id": getattr(s, "id", None), "status": getattr(s, "status", None),
                 "end_user_id": getattr(s, "end_user_id", None)} for s in sessions]
        parts.append(f"{len(rows)} capture session(s)" + (_table(rows[-20:], ["id", "status", "end_user_id"])
                                                          if rows else ""))
    except Exception as e:  # noqa: BLE001
        parts.append(f"<span style='color:#b91c1c'>cannot list sessions: {html.escape(str(e))}</span>")
    return "<div>" + "<br>".join(parts) + "</div>"


def _make_magics():
    from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
    from IPython.display import HTML, display

    @magics_class
    class VdbnbMagics(Magics):
        @line_cell_magic
        def vdbnb_private(self, line: str = "", cell: str | None = None):
            from vdbnb.capture import kernel_record as kernel
            if cell is not None:   # only reached without the input transformer (load_ext installs it)
                return self.shell.run_cell(cell, store_history=False)
            arg = line.strip().lower()
            if arg in ("on", "off"):
                kernel.set_private(arg == "on")
            elif arg:
                print("usage: %vdbnb_private on|off   (or %%vdbnb_private as a cell's first line)")
                return None
            print(f"vdbnb: every cell private: {'on' if kernel.session_private() else 'off'}")
            return None

        @line_magic
        def vdbnb(self, line: str = ""):
            args = shlex.split(line)
            cmd, rest = (args[0], args[1:]) if args else ("help", [])
            if cmd == "help":
                print(HELP)
                return None
            if cmd == "connect":
                conn = _connection(rest[0] if rest else None, fresh=True)
                display(HTML(_status_html(conn)))
                return None
            if cmd == "status":
                try:
                    conn = _connection()
                except Exception as e:  # noqa: BLE001
                    display(HTML(f"<div style='color:#b91c1c'>not connected: {html.escape(str(e))}<br>What to do: "
                                 "<code>%vdbnb connect [URL]</code>, or set VDBNB_URL and VDBNB_API_KEY.</div>"))
                    return None
                display(HTML(_status_html(conn)))
                return None
            if cmd == "search":
                query = " ".join(rest).strip()
                if not query:
                    print("usage: %vdbnb search QUERY")
                    return None
                conn = _connection()
                coll = conn.get_collection() if hasattr(conn, "get_collection") else conn
                res = coll.search(query)
                self.shell.user_ns["_vdbnb_search"] = res
                df = getattr(res, "df", None)
                if callable(df):
                    df = df()
                return df if df is not None else res
            if cmd == "panel":
                from vdbnb.widgets import CapturePanel
                return CapturePanel()
            print(f"unknown subcommand {cmd!r}\n{HELP}")
            return None

    return VdbnbMagics


def load_ipython_extension(ip: Any) -> None:
    from vdbnb.capture.kernel_record import install_private_magic
    ip.register_magics(_make_magics())
    install_private_magic(ip)
    fmt = ip.display_formatter.formatters["text/html"]
    renderers = {"Event": event_html, "CaptureSession": session_html}
    for module, name in _FORMATTED:
        fmt.for_type_by_name(module, name, lambda obj, _n=name: renderers[_n](obj))
    ip.user_ns.setdefault("_vdbnb_search", None)


def unload_ipython_extension(ip: Any) -> None:
    fmt = ip.display_formatter.formatters["text/html"]
    for module, name in _FORMATTED:
        try:
            fmt.pop(f"{module}.{name}", None)
        except Exception:  # noqa: BLE001
            pass
