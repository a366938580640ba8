"""The kernel as a channel: record every cell this IPython kernel runs while a capture runs.

The hooks run on the kernel's main thread and only take references and timestamps (``pre_run_cell``: the
start time and the cell's metadata; output taps: references to what the display hook, the display
publisher and stdout/stderr are given; ``post_run_cell``: the end time and the result). Everything else —
the privacy decision, the output summary, the traceback, secret redaction, framing and sending — happens on
one background thread, so a cell never waits for the network or for formatting. The hooks' side is
``kernel_taps.py``, the record ``kernel_record.py``; this module is the recorder that ties them and sends.

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
import queue
import sys
import threading
import time

from vdbnb.capture.kernel_record import (CHANNEL_ID, _redactor, build_record, frame, install_private_magic,
                                         session_private)
from vdbnb.capture.kernel_taps import CellRun, OutputTaps, current_shell
from vdbnb.cells import CellRecord

logger = logging.getLogger(__name__)
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
        self._taps = OutputTaps(self.shell)
        self._run: CellRun | None = None
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
        run = CellRun(time.time())
        if info is not None:
            run.raw = getattr(info, "raw_cell", "") or ""
            run.cell_id = getattr(info, "cell_id", None)
            run.meta = getattr(info, "cell_meta", None)
        if run.meta is None:
            run.meta = self._parent_metadata()
        run.private = self.private or session_private()
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
