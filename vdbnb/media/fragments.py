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
    # video only: the seq of the fragment whose keyframe opens the GOP this fragment continues (None: this
    # fragment starts with a keyframe). GOPs may span many fragments; fragments stay short for live delivery.
    gop_seq: int | None = None

    def header(self) -> dict[str, Any]:
        h = {"channel_id": self.channel_id, "seq": self.seq, "kind": self.kind, "codec": self.codec,
             "t0": self.t0, "t1": self.t1, "packets": _compact(self)}
        if self.codec_info:
            h["codec_info"] = self.codec_info
        if self.meta:
            h["meta"] = self.meta
        if self.gop_seq is not None:
            h["gop_seq"] = self.gop_seq
        return h

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


def _compact(frag: Fragment) -> list:
    """Audio packets that evenly fill t0..t1 (every one the same duration, as Opus frames are) go on the wire
    as their sizes alone — the pts of each follows from t0..t1; a 0.25 s fragment's header shrinks ~2.5x, and
    headers were most of the stored audio bytes. Anything else keeps its {pts, size, ...} dicts."""
    pk = frag.packets
    if frag.kind != "audio" or not pk or any(set(p) - {"pts", "size"} for p in pk):
        return pk
    step = (frag.t1 - frag.t0) / len(pk)
    if all(abs(float(p["pts"]) - (frag.t0 + i * step)) < 5e-4 for i, p in enumerate(pk)):
        return [int(p["size"]) for p in pk]
    return pk


def _expand(packets: list, t0: float, t1: float) -> list[dict[str, Any]]:
    if not packets or not any(isinstance(p, int) for p in packets):
        return packets
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in packets):
        raise FragmentError("BAD_HEADER", "packets must be all {pts, size, ...} objects or all sizes (audio)")
    step = (t1 - t0) / len(packets)
    return [{"pts": round(t0 + i * step, 4), "size": p} for i, p in enumerate(packets)]


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
            t0=float(h["t0"]), t1=float(h["t1"]), packets=_expand(list(h["packets"]), float(h["t0"]),
                                                                   float(h["t1"])), payload=payload,
            codec_info=dict(h.get("codec_info") or {}), meta=dict(h.get("meta") or {}),
            gop_seq=None if h.get("gop_seq") is None else int(h["gop_seq"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise FragmentError("BAD_HEADER", f"fragment header field missing or of the wrong type: {e}") from None
    if frag.seq < 0:
        raise FragmentError("BAD_HEADER", "seq must be >= 0")
    if frag.kind not in KINDS:
        raise FragmentError("BAD_HEADER", f"kind must be one of {', '.join(KINDS)}, not {frag.kind!r}")
    if frag.gop_seq is not None and (frag.kind != "video" or not 0 <= frag.gop_seq < frag.seq):
        raise FragmentError("BAD_HEADER", f"gop_seq {frag.gop_seq} must name an earlier video fragment "
                            f"(0 <= gop_seq < seq {frag.seq})")
    if not (frag.t1 >= frag.t0 > 0):
        raise FragmentError("BAD_TIMES", "t0/t1 must be epoch seconds with t1 >= t0")
    try:
        total = sum(int(p["size"]) for p in frag.packets)
    except (KeyError, TypeError, ValueError):
        raise FragmentError("BAD_HEADER", "every packet needs an integer size") from None
    if total != len(payload):
        raise FragmentError("TRUNCATED", f"packets declare {total} bytes but the payload has {len(payload)}")
    return frag
