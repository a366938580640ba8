"""What a :class:`~vdbnb.widgets.CapturePanel` listens to, as two small interfaces.

The panel never knows where its data comes from. It needs:

(a) a **preview/capture source** (:class:`PreviewSource`): lists channels, starts/stops a recording, pauses and
    resumes channels, and emits local preview messages to subscribers::

        listener("thumbnail",   {"channel_id", "ts", "width", "height", "jpeg": bytes})   # or "jpeg_b64": str
        listener("audio-level", {"channel_id", "ts", "rms", "peak"})
        listener("error",       {"code", "message", "channel_id"?})                     # optional
        listener("recording-started" | "recording-complete" | "channel-lost", {...})     # optional

    ``CaptureClient``'s sync facade (recorder line protocol, ``docs/recorder-protocol.md``) fits this shape;
    :class:`~vdbnb.widgets._local_preview.LocalPreviewSource` is an in-kernel preview (mss + sounddevice)
    that can show screens and meters but cannot record.

(b) an **event source** (:class:`EventSource`): delivers :class:`vdbnb.events.Event` objects (transcript,
    audio/visual index, alerts, capture_session, pipeline) to a subscriber, e.g. from the server websocket.
    A plain iterable of events also works (:func:`as_event_source` drains it in a thread).

Listeners are called from the source's own threads; they must be quick (the panel only stores and returns).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from vdbnb.events import Event

PreviewListener = Callable[[str, dict], None]
EventListener = Callable[[Event], None]
Unsubscribe = Callable[[], None]
log = logging.getLogger(__name__)


class Listeners:
    """A thread-safe listener registry, the one every source uses: ``add(fn)`` returns the unsubscribe
    function; ``emit(*args)`` calls each listener outside the lock, and a listener that raises is logged
    without stopping the others (or the source's thread). ``on_empty`` runs when the last one leaves."""

    def __init__(self, on_empty: Callable[[], None] | None = None):
        self._fns: list[Callable[..., None]] = []
        self._lock = threading.Lock()
        self._on_empty = on_empty

    def __len__(self) -> int:
        return len(self._fns)

    def add(self, fn: Callable[..., None]) -> Unsubscribe:
        with self._lock:
            self._fns.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn not in self._fns:
                    return
                self._fns.remove(fn)
                empty = not self._fns
            if empty and self._on_empty is not None:
                self._on_empty()
        return unsubscribe

    def emit(self, *args: Any) -> None:
        with self._lock:
            fns = list(self._fns)
        for fn in fns:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one bad listener must not starve the others
                log.exception("listener %r failed", fn)


@runtime_checkable
class PreviewSource(Protocol):
    def list_channels(self) -> list[dict]:
        """Channels as dicts: ``{"channel_id": "display:1", "type": "video"|"audio", "name": ...}``."""

    def subscribe(self, listener: PreviewListener) -> Unsubscribe:
        """Call ``listener(kind, payload)`` for every preview message; return a function that unsubscribes."""

    def start(self, channels: list[str]) -> Any:
        """Start recording these channel ids; returns the capture session (object, dict or id)."""

    def stop(self) -> Any: ...

    def pause(self, channel_id: str) -> None: ...

    def resume(self, channel_id: str) -> None: ...

    # optional: start_preview(channels: list[str] | None) / stop_preview() / close()


@runtime_checkable
class EventSource(Protocol):
    def subscribe(self, listener: EventListener) -> Unsubscribe:
        """Call ``listener(event)`` for every :class:`~vdbnb.events.Event`; return an unsubscribe function."""


class IterableEventSource:
    """Adapts any iterable/generator of :class:`Event` (or websocket dicts) to :class:`EventSource`.

    The iterable is drained in a daemon thread once the first listener subscribes.
    """

    def __init__(self, iterable: Iterable[Any]):
        self._it = iterable
        self._listeners = Listeners()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def subscribe(self, listener: EventListener) -> Unsubscribe:
        unsubscribe = self._listeners.add(listener)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vdbnb-events", daemon=True)
                self._thread.start()
        return unsubscribe

    def _run(self) -> None:
        try:
            for item in self._it:
                self._listeners.emit(to_event(item))
        except BaseException as e:  # noqa: BLE001 - surfaced to the panel as an error
            self.error = e
        finally:
            self.done.set()


def to_event(item: Any) -> Event:
    if isinstance(item, Event):
        return item
    if isinstance(item, dict):
        if "channel" in item and "data" in item or "capture_session_id" in item:
            return Event.from_ws(item)
        return Event.from_row(item)
    raise TypeError(f"not an event: {type(item).__name__}")


def as_event_source(obj: Any) -> EventSource | None:
    """Accept an EventSource, an iterable of events, or None."""
    if obj is None:
        return None
    if hasattr(obj, "subscribe"):
        return obj
    if isinstance(obj, Iterable):
        return IterableEventSource(obj)
    raise TypeError("events= must have .subscribe(listener) or be an iterable of vdbnb.events.Event")
