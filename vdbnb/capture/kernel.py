"""The kernel as a channel: record every cell this IPython kernel runs while a capture runs.

The hooks run on the kernel's main thread and only take references and timestamps (``pre_run_cell``: the
start time and the cell's metadata; output taps: references to what the display hook, the display
publisher and stdout/stderr are given; ``post_run_cell``: the end time and the result). Everything else —
the privacy decision, the output summary, the traceback, secret redaction, framing and sending — happens on
one background thread, so a cell never waits for the network or for formatting.

A cell travels as an ingest fragment of kind ``cell`` (``vdbnb/cells.py``) posted with the client token to
``POST /capture/session/{id}/fragment``: the server stores it (fsync) before it acknowledges, acknowledges a
resent one again without storing it twice, and takes it after the session stopped when it ran before the
stop. Unacknowledged cells stay in an in-kernel buffer and are resent with backoff, so a server blip or a
restart loses nothing while the kernel lives.

Opting out: ``%%vdbnb_private`` as a cell's first line, a ``vdbnb-private`` cell tag (JupyterLab 4 and
Notebook 7 send cell metadata with each execution), ``%vdbnb_private on`` for every following cell of the
kernel (``off`` to end), or ``KernelChannel.private = True`` for one capture. Of a private cell only "a
private cell ran" (with its start and end) leaves the kernel.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any

from vdbnb.cells import (CODEC, KIND, MAX_OUTPUT_TEXT, MAX_OUTPUTS, MAX_SOURCE, MAX_TRACEBACK, CellRecord,
                         clip)

logger = logging.getLogger(__name__)

CHANNEL_ID = "kernel:current"
PRIVATE_MAGIC = "%%vdbnb_private"
PRIVATE_TAGS = frozenset({"vdbnb-private", "vdbnb_private"})
TRACEBACK_FRAMES = 5
_STATE = {"private": False}   # %vdbnb_private on|off: every following cell of this kernel is private


def set_private(on: bool) -> None:
    """Make every following cell of this kernel private (``%vdbnb_private on``), or end that (``off``)."""
    _STATE["private"] = bool(on)


def session_private() -> bool:
    return _STATE["private"]


def current_shell():
    """The IPython shell this code runs in, or None (a plain Python process)."""
    ipy = sys.modules.get("IPython")
    get = getattr(ipy, "get_ipython", None)
    return get() if get else None


# ------------------------------------------------------------------ %%vdbnb_private without a nested run
def strip_private_magic(lines: list[str]) -> list[str]:
    """Input transformer: a cell that starts with ``%%vdbnb_private`` runs as the cell below that line."""
    if lines and lines[0].strip() == PRIVATE_MAGIC:
        return lines[1:]
    return lines


def install_private_magic(shell) -> None:
    """Let ``%%vdbnb_private`` cells run as plain cells (idempotent)."""
    cleanup = getattr(shell, "input_transformers_cleanup", None)
    if cleanup is not None and strip_private_magic not in cleanup:
        cleanup.append(strip_private_magic)


# ------------------------------------------------------------------ what the main thread collects
class _Run:
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


class _Taps:
    """Per-cell wrappers around the display hook, the display publisher and stdout/stderr. Installed at
    ``pre_run_cell`` and removed at ``post_run_cell`` (IPython itself patches the streams' ``write`` around
    each cell, so a wrapper set outside a cell would not survive it)."""

    def __init__(self, shell):
        self.shell = shell
        self.run: _Run | None = None
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

    def install(self, run: _Run) -> None:
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


def _keep_bundle(run: _Run, into: list, bundle: Any) -> None:
    if len(run.results) + len(run.displays) < MAX_OUTPUTS:
        into.append(bundle)
    else:
        run.dropped += 1


def _keep_stream(run: _Run, name: str, text: Any) -> None:
    if not isinstance(text, str) or not text:
        return
    n = run.stream_chars.get(name, 0)
    run.stream_chars[name] = n + len(text)
    if n <= MAX_OUTPUT_TEXT:
        run.streams.setdefault(name, []).append(text[: MAX_OUTPUT_TEXT + 1 - n])


# ------------------------------------------------------------------ building a record (sender thread)
def cell_is_private(run: _Run) -> bool:
    if run.private or run.raw.lstrip().startswith(PRIVATE_MAGIC):
        return True
    tags = (run.meta or {}).get("tags") or []
    return isinstance(tags, (list, tuple)) and any(t in PRIVATE_TAGS for t in tags)


def _mimes(bundle: Any) -> list[str]:
    return [str(k) for k in bundle] if isinstance(bundle, dict) else []


def _plain(bundle: Any) -> str | None:
    if not isinstance(bundle, dict):
        return None
    t = bundle.get("text/plain")
    if isinstance(t, list):
        t = "".join(map(str, t))
    return None if t is None else clip(t, MAX_OUTPUT_TEXT)


def summarise_outputs(run: _Run) -> tuple[list[dict], int]:
    outs: list[dict] = []
    for name in ("stdout", "stderr"):
        if name in run.streams:
            text = "".join(run.streams[name])
            outs.append({"output_type": "stream", "name": name, "mime_types": ["text/plain"],
                         "text": clip(text, MAX_OUTPUT_TEXT),
                         **({"truncated": True} if run.stream_chars.get(name, 0) > MAX_OUTPUT_TEXT else {})})
    for kind, bundles in (("display_data", run.displays), ("execute_result", run.results)):
        for b in bundles:
            o = {"output_type": kind, "mime_types": _mimes(b)}
            text = _plain(b)
            if text is not None:
                o["text"] = text
            outs.append(o)
    return outs[:MAX_OUTPUTS], max(0, len(outs) - MAX_OUTPUTS) + run.dropped


def _user_frames(tb_exc: traceback.TracebackException) -> None:
    """Drop IPython's own frames (run_code, ...) from the top of a cell's traceback."""
    stack = tb_exc.stack
    keep = [f for f in stack if f"{os.sep}IPython{os.sep}core{os.sep}" not in (f.filename or "")]
    if keep and len(keep) != len(stack):
        tb_exc.stack = traceback.StackSummary.from_list(keep)


def describe_error(exc: BaseException | None) -> tuple[str | None, str | None, str | None]:
    """(name, message, short traceback) of an exception; the traceback keeps the last few frames."""
    if exc is None:
        return None, None, None
    try:
        tbe = traceback.TracebackException(type(exc), exc, exc.__traceback__, limit=None, compact=True)
        _user_frames(tbe)
        if len(tbe.stack) > TRACEBACK_FRAMES:
            tbe.stack = traceback.StackSummary.from_list(tbe.stack[-TRACEBACK_FRAMES:])
        tb_text = "".join(tbe.format())
    except Exception:  # noqa: BLE001 - a broken __str__ or a frame that cannot be read
        tb_text = None
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = f"<{type(exc).__name__} with an unprintable message>"
    return type(exc).__name__, message, clip(tb_text, MAX_TRACEBACK)


def _redactor():
    """The secret/PII step screen text goes through (vdbnb.ai.secrets): text -> (text, labels found)."""
    from vdbnb.ai.secrets import REDACT_LABELS, redact, scan

    def run(text: str | None, found: set[str]) -> str | None:
        if not text:
            return text
        hits = [f for f in scan(text) if f.label in REDACT_LABELS]
        if not hits:
            return text
        found.update(f.label for f in hits)
        return redact(text, hits, mask="[redacted]")
    return run


def build_record(run: _Run, redact=None) -> CellRecord:
    """The record of one cell: everything for a normal cell, only start and end for a private one."""
    end = run.end if run.end is not None else time.time()
    if cell_is_private(run):
        return CellRecord(start=run.start, end=end, private=True)
    res = run.result
    exc = getattr(res, "error_before_exec", None) or getattr(res, "error_in_exec", None)
    if exc is None and res is not None and not getattr(res, "success", True):
        last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        exc = last if last is not None and last is not run.last_exc_before else None
    ok = exc is None and (res is None or getattr(res, "success", True))
    ename, evalue, tb = describe_error(exc)
    outputs, dropped = summarise_outputs(run)
    rec = CellRecord(start=run.start, end=end, execution_count=getattr(res, "execution_count", None),
                     status="ok" if ok else "error", source=clip(run.raw, MAX_SOURCE), ename=ename,
                     evalue=evalue, traceback=tb, outputs=outputs, outputs_dropped=dropped,
                     notebook_path=run.notebook_path, cell_id=run.cell_id)
    if not ok and ename is None:
        rec.ename = "Error"
    redact = redact or _redactor()
    found: set[str] = set()
    rec.source = redact(rec.source, found)
    rec.evalue = redact(rec.evalue, found)
    rec.traceback = redact(rec.traceback, found)
    for o in rec.outputs:
        if o.get("text"):
            o["text"] = redact(o["text"], found)
    rec.redacted = sorted(found)
    return rec


def frame(rec: CellRecord, seq: int, channel_id: str = CHANNEL_ID) -> bytes:
    """The ingest message (docs/ingest.md) carrying one cell record."""
    from vdbnb.media.fragments import Fragment

    payload = rec.to_payload()
    return Fragment(channel_id=channel_id, seq=seq, kind=KIND, codec=CODEC, t0=rec.start, t1=rec.end,
                    packets=[{"pts": rec.start, "size": len(payload)}], payload=payload).pack()


# ------------------------------------------------------------------ the recorder
class KernelRecorder:
    """Records the cells of ``shell`` into the capture session ``session_id`` on the server at ``base_url``."""

    def __init__(self, base_url: str, client_token: str, session_id: str, shell=None,
                 channel_id: str = CHANNEL_ID, private: bool = False, backoff_cap: float = 5.0,
                 http_timeout: float = 10.0):
        self.shell = shell or current_shell()
        if self.shell is None or not hasattr(self.shell, "events"):
            raise RuntimeError("the kernel channel records the cells of an IPython kernel, and this code does not "
                               "run in one; record it from a notebook (or drop the kernel channel)")
        self.url = f"{base_url.rstrip('/')}/capture/session/{session_id}/fragment"
        self.token = client_token
        self.session_id = session_id
        self.channel_id = channel_id
        self.private = private
        self.backoff_cap = backoff_cap
        self.http_timeout = http_timeout
        self._taps = _Taps(self.shell)
        self._run: _Run | None = None
        self._depth = 0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: collections.OrderedDict[int, bytes] = collections.OrderedDict()   # seq -> message
        self._cond = threading.Condition()
        self._seq = 0
        self._busy = 0                     # records taken off the queue and not yet framed
        self._next_try = 0.0
        self._backoff = 0.0
        self._closed = False
        self._finishing = False
        self._thread: threading.Thread | None = None
        self.started = False
        self.stats = {"cells": 0, "private": 0, "sent": 0, "acked": 0, "retries": 0, "rejected": 0}
        self.rejected: list[dict] = []
        self.last_error: str | None = None

    # ---- main thread: hooks (keep them cheap)
    def _pre(self, info=None) -> None:
        self._depth += 1
        if self._depth > 1:          # a cell run inside a cell (%%capture, ...): part of the outer one
            return
        run = _Run(time.time())
        if info is not None:
            run.raw = getattr(info, "raw_cell", "") or ""
            run.cell_id = getattr(info, "cell_id", None)
            run.meta = getattr(info, "cell_meta", None)
        if run.meta is None:
            run.meta = self._parent_metadata()
        run.private = self.private or _STATE["private"]
        run.last_exc_before = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        ns = getattr(self.shell, "user_ns", {})
        run.notebook_path = ns.get("__vsc_ipynb_file__") or ns.get("__session__")
        self._run = run
        self._taps.install(run)

    def _post(self, result=None) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth:
            return
        run, self._run = self._run, None
        self._taps.remove()
        if run is None:   # started in the middle of a cell: that cell is not recorded
            return
        run.end = time.time()
        run.result = result
        if not run.raw and result is not None:
            run.raw = getattr(getattr(result, "info", None), "raw_cell", "") or ""
        self._q.put(run)

    def _parent_metadata(self) -> dict | None:
        kernel = getattr(self.shell, "kernel", None)
        try:
            parent = kernel.get_parent() if kernel is not None else None
        except Exception:  # noqa: BLE001
            return None
        md = (parent or {}).get("metadata") if isinstance(parent, dict) else None
        return md if isinstance(md, dict) else None

    # ---- lifecycle
    def start(self) -> "KernelRecorder":
        if self.started:
            return self
        import httpx

        self._http = httpx.Client(timeout=self.http_timeout, headers={
            "x-access-token": self.token, "content-type": "application/octet-stream"})
        self._thread = threading.Thread(target=self._loop, name="vdbnb-kernel-cells", daemon=True)
        self._thread.start()
        install_private_magic(self.shell)
        self.shell.events.register("pre_run_cell", self._pre)
        self.shell.events.register("post_run_cell", self._post)
        self.started = True
        return self

    def stop(self, drain_timeout: float = 10.0) -> dict:
        """Stop recording new cells and wait (bounded) until every recorded cell is acknowledged. Cells that are
        not yet are kept and resent in the background (the server takes cells that ran before the stop)."""
        if self.started:
            for name, fn in (("pre_run_cell", self._pre), ("post_run_cell", self._post)):
                try:
                    self.shell.events.unregister(name, fn)
                except ValueError:
                    pass
            self._taps.remove()
            self._run = None
            self.started = False
            self._finishing = True   # the sender ends once every recorded cell is acknowledged
        drained = self.drain(drain_timeout)
        return self.report(drained)

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            self._next_try = 0.0                 # try now, not after the current backoff
        self._q.put(False)                       # wake the sender
        with self._cond:
            while self._pending or self._busy or not self._q.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        """Stop for good: no more resends (what is still unacknowledged is reported, then dropped)."""
        self._closed = True
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(5)
        http = getattr(self, "_http", None)
        if http is not None and not http.is_closed:
            http.close()

    def report(self, drained: bool | None = None) -> dict:
        with self._cond:
            unacked = list(self._pending)
        return {"channel_id": self.channel_id, "complete": not unacked and not self.rejected,
                "drained": drained, "cells": self.stats["cells"], "private": self.stats["private"],
                "acked": self.stats["acked"], "unacked": unacked, "rejected": list(self.rejected),
                "retries": self.stats["retries"], "last_error": self.last_error}

    # ---- sender thread
    def _loop(self) -> None:
        redact = None
        while True:
            with self._cond:
                wait = max(0.0, self._next_try - time.monotonic()) if self._pending else None
            try:
                run = self._q.get(timeout=wait) if wait is None or wait > 0 else self._q.get_nowait()
            except queue.Empty:
                run = False
            if run is None:
                return
            while run:
                with self._cond:
                    self._busy += 1
                try:
                    if redact is None:
                        redact = _redactor()
                    self._add(build_record(run, redact))
                except Exception:  # noqa: BLE001 - one bad cell must not stop the channel
                    logger.exception("could not record a cell")
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._cond.notify_all()
                try:
                    run = self._q.get_nowait()
                except queue.Empty:
                    run = False
                if run is None:
                    return
            self._send_pending()
            with self._cond:
                done = self._finishing and not self._pending and not self._busy and self._q.empty()
            if done:
                self._http.close()
                return

    def _add(self, rec: CellRecord) -> None:
        with self._cond:
            seq = self._seq
            self._seq += 1
            self._pending[seq] = frame(rec, seq, self.channel_id)
        self.stats["cells"] += 1
        if rec.private:
            self.stats["private"] += 1

    def _send_pending(self) -> None:
        with self._cond:
            if time.monotonic() < self._next_try:
                return
            todo = list(self._pending.items())
        for seq, msg in todo:
            if self._closed:
                return
            verdict = self._post_one(seq, msg)
            with self._cond:
                if verdict == "retry":
                    self._backoff = min(self.backoff_cap, max(0.2, self._backoff * 2))
                    self._next_try = time.monotonic() + self._backoff
                    self.stats["retries"] += 1
                    self._cond.notify_all()
                    return
                self._pending.pop(seq, None)
                self._backoff = 0.0
                self._cond.notify_all()

    def _post_one(self, seq: int, msg: bytes) -> str:
        import httpx

        self.stats["sent"] += 1
        try:
            r = self._http.post(self.url, content=msg)
        except httpx.HTTPError as e:
            self.last_error = f"cannot reach the server: {e!r}"
            return "retry"
        if r.status_code < 300:
            self.stats["acked"] += 1
            return "acked"
        try:
            body = r.json()
        except ValueError:
            body = {}
        code = body.get("error_code") or f"HTTP_{r.status_code}"
        message = body.get("message") or r.text[:300]
        self.last_error = f"{code}: {message}"
        if r.status_code >= 500 or r.status_code in (408, 425, 429):
            return "retry"   # the server cannot store it now (disk full, restarting): it stays buffered
        self.stats["rejected"] += 1
        self.rejected.append({"channel_id": self.channel_id, "seq": seq, "error_code": code, "message": message})
        logger.warning("the server rejected cell #%d of %s: %s", seq, self.session_id, self.last_error)
        return "rejected"
