"""The panel's real sources: the recorder process (previews, capture) and the server's event websocket.

``RecorderSource`` fits :class:`~vdbnb.widgets.sources.PreviewSource` over a ``SyncCaptureClient`` and a
backend ``Connection``: starting creates a capture session, records with the recorder, and (``ai=True``)
starts the transcript on every audio stream and a visual index on every display once the session is
active. ``ServerEvents`` fits :class:`~vdbnb.widgets.sources.EventSource` over the collection websocket.
"""
from __future__ import annotations

import base64
import getpass
import logging
import threading
import time
from typing import Any, Callable

from ..events import Event

log = logging.getLogger("vdbnb.widgets")
PREVIEW_EVENTS = ("thumbnail", "audio-level", "error", "recording-started", "recording-complete", "channel-lost")


class RecorderSource:
    def __init__(self, conn=None, ai: bool = True, end_user_id: str | None = None,
                 visual_prompt: str = "Describe what is on the screen", **capture_options: Any):
        if conn is None:
            from ..api import connect
            conn = connect()
        from ..capture import SyncCaptureClient
        self.conn = conn
        self.ai = ai
        self.visual_prompt = visual_prompt
        self.end_user_id = end_user_id or _user()
        self.capture_options = capture_options
        self.client = SyncCaptureClient(conn.generate_client_token(expires_in=86400), conn.base_url)
        self.session = None
        self._listeners: list[Callable[[str, dict], None]] = []
        self._lock = threading.Lock()
        self.client.on_event(self._dispatch)
        self._channels = None
        self._ai_thread: threading.Thread | None = None

    # ---- PreviewSource
    def list_channels(self) -> list[dict]:
        self._channels = self.client.list_channels()
        out = []
        for c in self._channels.all():
            d = c.to_dict()
            d["is_default"] = bool(getattr(c, "is_default", False))
            out.append(d)
        return out

    def subscribe(self, listener: Callable[[str, dict], None]):
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def start_preview(self, channels: list[str] | None = None) -> None:
        self.client.start_preview(channels)

    def stop_preview(self) -> None:
        self.client.stop_preview()

    def start(self, channels: list[str]) -> Any:
        if self._channels is None:
            self.list_channels()
        chosen = [c for c in self._channels.all() if c.id in set(channels)]
        if not chosen:
            raise ValueError(f"none of {channels} is a channel of this machine; list_channels() shows them")
        for c in chosen:
            c.store = True
        self.session = self.conn.create_capture_session(end_user_id=self.end_user_id,
                                                        metadata={"source": "CapturePanel"})
        self.client.start_session(self.session.id, chosen, **self.capture_options)
        if self.ai:
            self._ai_thread = threading.Thread(target=self._start_ai, name="vdbnb-panel-ai", daemon=True)
            self._ai_thread.start()
        return self.session

    def stop(self) -> Any:
        res = self.client.stop_session()
        if self.session is not None:
            self.session.refresh()
        return res

    def pause(self, channel_id: str) -> None:
        self.client.pause(channel_id)  # the recorder takes a channel id (one display) or a track name

    def resume(self, channel_id: str) -> None:
        self.client.resume(channel_id)

    def close(self) -> None:
        self.client.shutdown()

    # ---- internals
    def _dispatch(self, ev) -> None:
        if ev.event not in PREVIEW_EVENTS:
            return
        payload = dict(ev.payload or {})
        if ev.event == "thumbnail" and "jpeg" not in payload and payload.get("jpeg_b64"):
            payload["jpeg"] = base64.b64decode(payload.pop("jpeg_b64"))
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(ev.event, payload)

    def _start_ai(self) -> None:
        """Once the session is active: transcripts on audio streams, a visual index on each display."""
        try:
            sess = self.session.wait_for("active", timeout=30)
            for r in sess.rtstreams:
                if r.channel_id in ("mic", "system_audio"):
                    r.start_transcript()
                elif r.channel_id == "screen":
                    r.index_visuals(prompt=self.visual_prompt, batch_config={"type": "time", "value": 2})
        except Exception as e:  # shown in the panel as an error with what to do
            log.warning("could not start the AI on the session: %s", e)
            for fn in list(self._listeners):
                fn("error", {"code": "AI_START_FAILED", "message": f"could not start transcripts/indexes: {e}"})


class ServerEvents:
    """Every event of the collection from the server websocket, on a background thread."""

    def __init__(self, conn, collection_id: str = "default"):
        self.conn = conn
        self.collection_id = collection_id
        self._listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        self._listener = None

    def subscribe(self, listener: Callable[[Event], None]):
        with self._lock:
            self._listeners.append(listener)
            if self._listener is None:
                self._listener = self.conn.listen(self._dispatch, self.collection_id)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def _dispatch(self, ev: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(ev)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()


def recorder_sources(conn=None, **kw) -> tuple[RecorderSource, ServerEvents]:
    """The default sources of ``CapturePanel()``: the recorder + the embedded (or configured) server."""
    if conn is None:
        from ..api import connect
        conn = connect()
    return RecorderSource(conn, **kw), ServerEvents(conn)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"user-{int(time.time())}"
