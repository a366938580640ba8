"""Fragment framing: the wire contract shared by the recorder (pack) and the server (unpack). See docs/ingest.md."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

MAX_HEADER = 256 * 1024
MAX_FRAGMENT = 16 * 1024 * 1024
KINDS = ("audio", "video", "cell")   # cell: one kernel cell execution, a JSON payload (vdbnb/server/kernel.py)


class FragmentError(ValueError):
    """A fragment is malformed; ``code`` is a stable error code for nack messages."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Fragment:
    channel_id: str
    seq: int
    kind: str                 # audio | video | cell (a kernel cell execution)
    codec: str                # opus | h264 | json
    t0: float
    t1: float
    packets: list[dict[str, Any]]
    payload: bytes
    codec_info: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def header(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "seq": self.seq, "kind": self.kind, "codec": self.codec,
                "t0": self.t0, "t1": self.t1, "packets": self.packets, "codec_info": self.codec_info,
                "meta": self.meta}

    def pack(self) -> bytes:
        h = json.dumps(self.header(), separators=(",", ":")).encode()
        return struct.pack(">I", len(h)) + h + self.payload

    def packet_bytes(self):
        """Yield (packet_dict, bytes) in order."""
        off = 0
        for p in self.packets:
            n = int(p["size"])
            yield p, self.payload[off:off + n]
            off += n


def unpack(buf: bytes) -> Fragment:
    """Parse and validate one fragment message; raises FragmentError with a clear reason."""
    if len(buf) < 4:
        raise FragmentError("TRUNCATED", "fragment shorter than its 4-byte header length")
    if len(buf) > MAX_FRAGMENT:
        raise FragmentError("TOO_LARGE", f"fragment of {len(buf)} bytes exceeds {MAX_FRAGMENT}")
    (n,) = struct.unpack(">I", buf[:4])
    if n == 0 or n > MAX_HEADER or 4 + n > len(buf):
        raise FragmentError("TRUNCATED", f"header length {n} does not fit a {len(buf)}-byte fragment")
    try:
        h = json.loads(buf[4:4 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FragmentError("BAD_HEADER", f"fragment header is not JSON: {e}") from None
    if not isinstance(h, dict):
        raise FragmentError("BAD_HEADER", "fragment header must be a JSON object")
    payload = buf[4 + n:]
    try:
        frag = Fragment(
            channel_id=str(h["channel_id"]), seq=int(h["seq"]), kind=str(h["kind"]), codec=str(h["codec"]),
            t0=float(h["t0"]), t1=float(h["t1"]), packets=list(h["packets"]), payload=payload,
            codec_info=dict(h.get("codec_info") or {}), meta=dict(h.get("meta") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise FragmentError("BAD_HEADER", f"fragment header field missing or of the wrong type: {e}") from None
    if frag.seq < 0:
        raise FragmentError("BAD_HEADER", "seq must be >= 0")
    if frag.kind not in KINDS:
        raise FragmentError("BAD_HEADER", f"kind must be one of {', '.join(KINDS)}, not {frag.kind!r}")
    if not (frag.t1 >= frag.t0 > 0):
        raise FragmentError("BAD_TIMES", "t0/t1 must be epoch seconds with t1 >= t0")
    try:
        total = sum(int(p["size"]) for p in frag.packets)
    except (KeyError, TypeError, ValueError):
        raise FragmentError("BAD_HEADER", "every packet needs an integer size") from None
    if total != len(payload):
        raise FragmentError("TRUNCATED", f"packets declare {total} bytes but the payload has {len(payload)}")
    return frag
