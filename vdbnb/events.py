"""The one event schema, shared by the server, the websocket, webhooks and the notebook's DataFrames.

Every result the server produces is an :class:`Event`. It is stored as one row, pushed on the
websocket in VideoDB's envelope (times in epoch **milliseconds**), and becomes one row of a DataFrame
(the column names are :data:`COLUMNS`). REST search results use epoch **seconds**.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

# websocket channels (VideoDB names); visual_index is also sent as scene_index by some apps
TRANSCRIPT = "transcript"
AUDIO_INDEX = "audio_index"
VISUAL_INDEX = "visual_index"
SCENE_INDEX = "scene_index"
ALERT = "alert"
CAPTURE_SESSION = "capture_session"
PIPELINE = "pipeline"  # vdbnb extension: pipeline health (falling behind, engine errors)
AGENT = "agent"        # vdbnb extension: what an AI agent asked (`vdbnb mcp` tool calls), who and when
KERNEL = "kernel"      # vdbnb extension: cell executions of the notebook kernel (event type CELL)
CHANNELS = (TRANSCRIPT, AUDIO_INDEX, VISUAL_INDEX, SCENE_INDEX, ALERT, CAPTURE_SESSION, PIPELINE, AGENT, KERNEL)

# event types (Event.event) of channels that carry more than one kind of event
CELL = "cell"          # one cell execution (websocket channel KERNEL)

# rtstream categories (RTStream.channel_id)
MIC = "mic"
SCREEN = "screen"
SYSTEM_AUDIO = "system_audio"
# KERNEL (above) is a category too: the kernel stream records cells, not media
CATEGORIES = (MIC, SCREEN, SYSTEM_AUDIO, KERNEL)
MEDIA_CATEGORIES = (MIC, SCREEN, SYSTEM_AUDIO)
AUDIO_CATEGORIES = (MIC, SYSTEM_AUDIO)

COLUMNS = [
    "id", "channel", "event", "session_id", "collection_id", "rtstream_id", "rtstream_name", "channel_id",
    "index_id", "text", "is_final", "start", "end", "label", "confidence", "engine",
    "captured_at", "processed_at", "emitted_at", "data",
]


def category_of(source_channel_id: str, kind: str | None = None) -> str:
    """Map a recorder channel id (``mic:default``, ``display:2``, ``system_audio:x``, ``kernel:current``) to its
    category."""
    cid = source_channel_id.lower()
    if cid.startswith("kernel") or kind == KERNEL:
        return KERNEL
    if cid.startswith(("display", "screen")):
        return SCREEN
    if cid.startswith("system_audio") or cid.startswith("system-audio"):
        return SYSTEM_AUDIO
    if cid.startswith("mic"):
        return MIC
    if kind == "video":
        return SCREEN
    return MIC


def kind_of(channel: str | None, event: str | None = None) -> str | None:
    """What a row is: the event type for channels that carry types (a kernel ``cell``), else its channel
    (``transcript``, ``visual_index``, ``alert``, ...). The ``kind`` column of the DataFrames."""
    if channel == KERNEL:
        return event or CELL
    return channel


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def event_id(*parts: Any) -> str:
    """A deterministic event id from what the event reports (stream, pipeline, index, media time …): a
    pipeline step that is retried (after its worker died) emits the same id, so it is stored once."""
    key = "|".join(f"{p:.2f}" if isinstance(p, float) else str(p) for p in parts)
    return "ev-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Event:
    channel: str                      # transcript | audio_index | visual_index | alert | capture_session | pipeline
    #                                   | kernel
    session_id: str | None = None
    collection_id: str | None = None
    rtstream_id: str | None = None
    rtstream_name: str | None = None
    channel_id: str | None = None     # mic | screen | system_audio | kernel
    index_id: str | None = None
    event: str | None = None          # e.g. capture_session.active, cell
    text: str | None = None
    is_final: bool | None = None
    start: float | None = None        # epoch seconds (media time)
    end: float | None = None
    label: str | None = None
    confidence: float | None = None
    engine: str | None = None
    captured_at: float | None = None  # epoch s: when the media was captured (end of the media it covers)
    processed_at: float | None = None  # epoch s: when the pipeline finished
    emitted_at: float | None = None   # epoch s: when it was stored/pushed
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("ev"))

    # ---- conversions -------------------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Event":
        d = dict(row)
        if isinstance(d.get("data"), str):
            d["data"] = json.loads(d["data"] or "{}")
        if d.get("is_final") is not None:
            d["is_final"] = bool(d["is_final"])
        return cls(**{k: d.get(k) for k in COLUMNS if k in d})

    def stamp_emitted(self) -> "Event":
        if self.emitted_at is None:
            self.emitted_at = time.time()
        return self

    def to_ws(self) -> dict[str, Any]:
        """VideoDB's websocket envelope (times in epoch milliseconds)."""
        if self.channel == CAPTURE_SESSION:
            return {
                "channel": CAPTURE_SESSION,
                "event": self.event,
                "capture_session_id": self.session_id,
                "status": self.data.get("status"),
                "data": self.data.get("data", {}),
                "event_id": self.id,
                "emitted_at": _ms(self.emitted_at),
            }
        data: dict[str, Any] = {
            "text": self.text,
            "start": _ms(self.start),
            "end": _ms(self.end),
        }
        if self.channel == TRANSCRIPT:
            data["is_final"] = bool(self.is_final)
        if self.channel == ALERT:
            data.update({"label": self.label, "triggered": True, "confidence": self.confidence,
                         "timestamp": _ms(self.start)})
        for k, v in (self.data or {}).items():
            data.setdefault(k, v)
        data.update({
            "engine": self.engine,
            "event_id": self.id,
            "captured_at": _ms(self.captured_at),
            "processed_at": _ms(self.processed_at),
            "emitted_at": _ms(self.emitted_at),
        })
        msg = {
            "channel": self.channel,
            **({"event": self.event} if self.event else {}),
            "rtstream_id": self.rtstream_id,
            "rtstream_name": self.rtstream_name,
            "channel_id": self.channel_id,
            "capture_session_id": self.session_id,
            "data": data,
        }
        if self.index_id:
            msg["index_id"] = self.index_id
        return msg

    @classmethod
    def from_ws(cls, msg: dict[str, Any]) -> "Event":
        """Parse a websocket message (from vdbnb or VideoDB's cloud) back into an Event."""
        channel = msg.get("channel") or msg.get("type") or "unknown"
        if channel == CAPTURE_SESSION or "capture_session_id" in msg and "event" in msg and "rtstream_id" not in msg:
            return cls(channel=CAPTURE_SESSION, session_id=msg.get("capture_session_id"), event=msg.get("event"),
                       data={"status": msg.get("status"), "data": msg.get("data") or {}},
                       emitted_at=_s(msg.get("emitted_at")), id=msg.get("event_id") or new_id("ev"))
        data = dict(msg.get("data") or {})
        ev = cls(
            channel=channel, event=msg.get("event"), session_id=msg.get("capture_session_id"),
            rtstream_id=msg.get("rtstream_id"),
            rtstream_name=msg.get("rtstream_name"), index_id=msg.get("index_id"),
            channel_id=msg.get("channel_id") or _category_from_name(msg.get("rtstream_name")),
            text=data.pop("text", None), is_final=data.pop("is_final", None),
            start=_s(data.pop("start", None)), end=_s(data.pop("end", None)),
            label=data.pop("label", None) or data.pop("event_label", None),
            confidence=data.pop("confidence", None), engine=data.pop("engine", None),
            captured_at=_s(data.pop("captured_at", None)), processed_at=_s(data.pop("processed_at", None)),
            emitted_at=_s(data.pop("emitted_at", None)), id=data.pop("event_id", None) or new_id("ev"),
        )
        data.pop("triggered", None)
        data.pop("timestamp", None)
        ev.data = data
        return ev


def _category_from_name(name: str | None) -> str | None:
    """VideoDB's cloud sends no channel_id on the websocket; its rtstream names start with the channel."""
    if not name:
        return None
    low = name.lower()
    for key, cat in (("system_audio", SYSTEM_AUDIO), ("system audio", SYSTEM_AUDIO), ("mic", MIC),
                     ("display", SCREEN), ("screen", SCREEN), ("kernel", KERNEL)):
        if key in low:
            return cat
    return None


def _ms(t: float | None) -> int | None:
    return None if t is None else int(round(t * 1000))


def _s(t: Any) -> float | None:
    if t is None:
        return None
    t = float(t)
    return t / 1000.0 if t > 1e11 else t  # tolerate seconds or milliseconds
