"""One kernel cell execution: the record the notebook kernel sends and the ``cell`` event the server makes of it.

Shared by the kernel side (``vdbnb/capture/kernel.py`` builds and sends records) and the server
(``vdbnb/server/kernel.py`` validates them and emits events). On the wire a record is the JSON payload of an
ingest fragment of kind ``cell`` (codec ``json``, one packet) on the channel ``kernel:current``; the fragment's
``seq``, ``t0`` and ``t1`` are the record's position, start and end. See docs/kernel-channel.md.

A private cell (``%%vdbnb_private``, a ``vdbnb-private`` tag, or the session switched private) is sent as
``{"private": true, "start", "end"}`` and nothing else: the event says only that a private cell ran.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .redaction import LABELS as SECRET_KINDS

KIND = "cell"
CODEC = "json"
PRIVATE_TEXT = "a private cell ran"
STATUSES = ("ok", "error")

MAX_SOURCE = 20_000      # characters of cell source kept
MAX_OUTPUT_TEXT = 2_000  # characters of text kept per output (text/plain, a stream)
MAX_OUTPUTS = 20         # outputs summarised per cell (the rest are counted)
MAX_TRACEBACK = 4_000    # characters of the short traceback
MAX_FIELD = 2_000        # exception name/message, notebook path, cell id
MAX_PAYLOAD = 256 * 1024
MAX_FINDINGS = 20
_FINGERPRINT = re.compile(r"fp-[0-9a-f]{16}")


class CellError(ValueError):
    """A cell record is malformed (a clear message for the ingest nack)."""


def clip(text: Any, limit: int) -> str | None:
    """``text`` as a string cut to ``limit`` characters (marked with … when cut); None stays None."""
    if text is None:
        return None
    s = text if isinstance(text, str) else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


@dataclass
class CellRecord:
    start: float                      # epoch seconds: pre_run_cell
    end: float                        # epoch seconds: post_run_cell
    private: bool = False
    execution_count: int | None = None
    status: str | None = None         # ok | error (None for a private cell)
    source: str | None = None
    ename: str | None = None          # exception class name, e.g. KeyError
    evalue: str | None = None         # its message, e.g. 'customer_id'
    traceback: str | None = None      # the last frames, plain text
    outputs: list[dict] = field(default_factory=list)  # [{output_type, name?, mime_types, text?, truncated?}]
    outputs_dropped: int = 0          # outputs beyond MAX_OUTPUTS (not summarised)
    notebook_path: str | None = None
    cell_id: str | None = None
    redacted: list[str] = field(default_factory=list)  # kinds of secret removed in the kernel (no characters)
    # what the kernel's redactor found (vdbnb.redaction.SecretFinding.place() + confidence): kind, field, span,
    # fingerprint - never a character of the secret; the server raises a built-in alert for each
    findings: list[dict] = field(default_factory=list)

    # ---- wire
    def to_payload(self) -> bytes:
        if self.private:
            d: dict[str, Any] = {"private": True, "start": self.start, "end": self.end}
        else:
            d = {k: v for k, v in asdict(self).items() if v not in (None, [], 0) or k in ("start", "end")}
            d["private"] = False
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> "CellRecord":
        if len(payload) > MAX_PAYLOAD:
            raise CellError(f"cell record of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        try:
            d = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as e:
            raise CellError(f"cell record is not JSON: {e}") from None
        if not isinstance(d, dict):
            raise CellError("cell record must be a JSON object")
        try:
            start, end = float(d["start"]), float(d["end"])
        except (KeyError, TypeError, ValueError):
            raise CellError("cell record needs start and end (epoch seconds)") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise CellError("cell record: end must not be before start")
        if d.get("private"):
            return cls(start=start, end=end, private=True)  # whatever else was sent is dropped
        status = d.get("status")
        if status not in STATUSES:
            raise CellError(f"cell record: status must be one of {STATUSES}, not {status!r}")
        outputs = d.get("outputs") or []
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise CellError("cell record: outputs must be a list of objects")
        count = d.get("execution_count")
        try:
            count = None if count is None else int(count)
        except (TypeError, ValueError):
            raise CellError("cell record: execution_count must be an integer") from None
        redacted = d.get("redacted") or []
        return cls(
            start=start, end=end, private=False, execution_count=count, status=status,
            source=clip(d.get("source"), MAX_SOURCE), ename=clip(d.get("ename"), MAX_FIELD),
            evalue=clip(d.get("evalue"), MAX_FIELD), traceback=clip(d.get("traceback"), MAX_TRACEBACK),
            outputs=[_output(o) for o in outputs[:MAX_OUTPUTS]],
            outputs_dropped=int(d.get("outputs_dropped") or 0) + max(0, len(outputs) - MAX_OUTPUTS),
            notebook_path=clip(d.get("notebook_path"), MAX_FIELD), cell_id=clip(d.get("cell_id"), MAX_FIELD),
            redacted=[str(x)[:64] for x in redacted][:20] if isinstance(redacted, list) else [],
            findings=_findings(d.get("findings")))

    # ---- views
    @property
    def error(self) -> str | None:
        """``KeyError: 'customer_id'`` for a failed cell."""
        if self.status != "error" or not self.ename:
            return None
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename

    def text(self) -> str:
        """The event's ``text``: the cell source (``a private cell ran`` for a private cell)."""
        return PRIVATE_TEXT if self.private else (self.source or "")

    def event_data(self) -> dict:
        """The event's ``data``: everything but the source (which is the event's ``text``)."""
        if self.private:
            return {"private": True, "duration": round(self.end - self.start, 6)}
        d = {k: v for k, v in asdict(self).items() if k not in ("source", "start", "end", "findings")}
        d["duration"] = round(self.end - self.start, 6)
        d["error"] = self.error
        return d


def _findings(v: Any) -> list[dict]:
    """The kernel's findings, checked: a known kind, a fingerprint of the redactor's form, a short field name,
    a span of two integers. Anything else is refused (a record must not smuggle text in as a finding)."""
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > MAX_FINDINGS:
        raise CellError(f"cell record: findings must be a list of at most {MAX_FINDINGS} objects")
    out = []
    for f in v:
        if not isinstance(f, dict) or f.get("detector") not in SECRET_KINDS \
                or not isinstance(f.get("fingerprint"), str) or not _FINGERPRINT.fullmatch(f["fingerprint"]):
            raise CellError("cell record: a finding needs a detector (one of "
                            f"{', '.join(SECRET_KINDS)}) and a fingerprint 'fp-' + 16 hex digits")
        g: dict[str, Any] = {"detector": f["detector"], "fingerprint": f["fingerprint"]}
        if isinstance(f.get("field"), str):
            g["field"] = f["field"][:64]
        span = f.get("span")
        if isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span):
            g["span"] = span
        try:
            g["confidence"] = min(1.0, max(0.0, float(f.get("confidence", 1.0))))
        except (TypeError, ValueError):
            raise CellError("cell record: a finding's confidence must be a number") from None
        out.append(g)
    return out


def _output(o: dict) -> dict:
    mimes = o.get("mime_types") or []
    out = {"output_type": str(o.get("output_type") or "display_data")[:32],
           "mime_types": [str(m)[:128] for m in mimes][:20] if isinstance(mimes, list) else []}
    if o.get("name"):
        out["name"] = str(o["name"])[:32]
    if o.get("text") is not None:
        out["text"] = clip(o["text"], MAX_OUTPUT_TEXT)
    if o.get("truncated"):
        out["truncated"] = True
    return out
