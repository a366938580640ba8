"""The kernel channel's record of one cell, built on the sender thread from what the hooks collected
(``kernel_taps.CellRun``): the privacy decision (``%%vdbnb_private``, a ``vdbnb-private`` tag, ``%vdbnb_private
on``), the output summary, the short traceback, secret redaction, and the ingest frame it travels in."""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from vdbnb.capture.kernel_taps import CellRun
from vdbnb.cells import (CODEC, KIND, MAX_FINDINGS, MAX_OUTPUT_TEXT, MAX_OUTPUTS, MAX_SOURCE, MAX_TRACEBACK,
                         CellRecord, clip)

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


# ------------------------------------------------------------------ building a record (sender thread)
def cell_is_private(run: CellRun) -> bool:
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


def summarise_outputs(run: CellRun) -> tuple[list[dict], int]:
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
    """The one redaction step (vdbnb.redaction, the same as screen and speech): text -> redacted text, each
    finding (kind, field, span, fingerprint; never a character) appended to ``found``."""
    from vdbnb.redaction import get_redactor
    r = get_redactor()

    def run(text: str | None, found: list, field: str) -> str | None:
        if not text:
            return text
        red = r.text(text, field)
        found.extend(red.findings)
        return red.text
    return run


def build_record(run: CellRun, redact=None) -> CellRecord:
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
    found: list = []
    rec.source = redact(rec.source, found, "source")
    rec.evalue = redact(rec.evalue, found, "evalue")
    rec.traceback = redact(rec.traceback, found, "traceback")
    for i, o in enumerate(rec.outputs):
        if o.get("text"):
            o["text"] = redact(o["text"], found, f"outputs.{i}.text")
    rec.redacted = sorted({f.label for f in found if f.redacted})
    rec.findings = [{**f.place(), "confidence": round(f.confidence, 3)} for f in found[:MAX_FINDINGS]]
    return rec


def frame(rec: CellRecord, seq: int, channel_id: str = CHANNEL_ID) -> bytes:
    """The ingest message (docs/ingest.md) carrying one cell record."""
    from vdbnb.media.fragments import Fragment

    payload = rec.to_payload()
    return Fragment(channel_id=channel_id, seq=seq, kind=KIND, codec=CODEC, t0=rec.start, t1=rec.end,
                    packets=[{"pts": rec.start, "size": len(payload)}], payload=payload).pack()
