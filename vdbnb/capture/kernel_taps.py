"""The kernel channel on the kernel's main thread: what one cell's hooks collect (``CellRun``: references and
timestamps only) and the per-cell taps on the display hook, the display publisher and stdout/stderr
(``OutputTaps``). Nothing here formats or sends: that is ``kernel_record.py`` on the sender thread."""
from __future__ import annotations

import sys
from typing import Any

from vdbnb.cells import MAX_OUTPUT_TEXT, MAX_OUTPUTS


def current_shell():
    """The IPython shell this code runs in, or None (a plain Python process)."""
    ipy = sys.modules.get("IPython")
    get = getattr(ipy, "get_ipython", None)
    return get() if get else None


# ------------------------------------------------------------------ what the main thread collects
class CellRun:
    """One cell as the hooks saw it: references only; formatted later on the sender thread."""
    __slots__ = ("start", "end", "raw", "cell_id", "meta", "result", "results", "displays", "dropped", "streams",
                 "stream_chars", "private", "last_exc_before", "notebook_path")

    def __init__(self, start: float):
        self.start = start
        self.end: float | None = None
        self.raw = ""
        self.cell_id = None
        self.meta: dict | None = None
        self.result = None
        self.results: list[dict] = []          # execute_result format dicts (the display hook)
        self.displays: list[dict] = []         # display_data bundles (the display publisher)
        self.dropped = 0                       # bundles beyond MAX_OUTPUTS (a display updated in a loop)
        self.streams: dict[str, list[str]] = {}
        self.stream_chars: dict[str, int] = {}
        self.private = False
        self.last_exc_before = None
        self.notebook_path = None


class OutputTaps:
    """Per-cell wrappers around the display hook, the display publisher and stdout/stderr. Installed at
    ``pre_run_cell`` and removed at ``post_run_cell`` (IPython itself patches the streams' ``write`` around
    each cell, so a wrapper set outside a cell would not survive it)."""

    def __init__(self, shell):
        self.shell = shell
        self.run: CellRun | None = None
        self._saved: list[tuple[Any, str, Any, Any]] = []   # (object, attribute, previous, ours)

    def _wrap(self, obj: Any, attr: str, on_call) -> None:
        prev = getattr(obj, attr, None)
        if prev is None:
            return

        def wrapper(*a, **kw):
            run = self.run
            if run is not None:
                try:
                    on_call(run, a, kw)
                except Exception:  # noqa: BLE001 - never break the user's output
                    pass
            return prev(*a, **kw)
        try:
            setattr(obj, attr, wrapper)
        except (AttributeError, TypeError):
            return
        self._saved.append((obj, attr, prev, wrapper))

    def install(self, run: CellRun) -> None:
        self.remove()
        self.run = run
        self._wrap(self.shell.displayhook, "write_format_data",
                   lambda r, a, kw: _keep_bundle(r, r.results, a[0] if a else kw.get("format_dict")))
        self._wrap(self.shell.display_pub, "publish",
                   lambda r, a, kw: _keep_bundle(r, r.displays, a[0] if a else kw.get("data")))
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name, None)
            if stream is not None:
                self._wrap(stream, "write", lambda r, a, kw, n=name: _keep_stream(r, n, a[0] if a else ""))

    def remove(self) -> None:
        self.run = None
        for obj, attr, prev, ours in reversed(self._saved):
            try:
                if obj.__dict__.get(attr) is ours:   # still ours on top: put back what was there
                    if getattr(type(obj), attr, None) is not None and _is_bound_of(prev, obj, attr):
                        delattr(obj, attr)
                    else:
                        setattr(obj, attr, prev)
            except (AttributeError, TypeError):
                pass
        self._saved.clear()


def _is_bound_of(fn: Any, obj: Any, attr: str) -> bool:
    """Whether ``fn`` is just the class's own method bound to ``obj`` (then deleting our attribute restores it)."""
    return getattr(fn, "__self__", None) is obj and getattr(fn, "__func__", None) is getattr(type(obj), attr, None)


def _keep_bundle(run: CellRun, into: list, bundle: Any) -> None:
    if len(run.results) + len(run.displays) < MAX_OUTPUTS:
        into.append(bundle)
    else:
        run.dropped += 1


def _keep_stream(run: CellRun, name: str, text: Any) -> None:
    if not isinstance(text, str) or not text:
        return
    n = run.stream_chars.get(name, 0)
    run.stream_chars[name] = n + len(text)
    if n <= MAX_OUTPUT_TEXT:
        run.streams.setdefault(name, []).append(text[: MAX_OUTPUT_TEXT + 1 - n])
