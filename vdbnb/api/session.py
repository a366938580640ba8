"""CaptureSession (names as the official SDK's, plus refresh(), events_df(), context(), plot())."""
from __future__ import annotations

import time
from typing import Any

from .rtstream import RTStream

ALIASES = {"mic": "mic", "mics": "mic", "microphone": "mic", "screen": "screen", "screens": "screen",
           "display": "screen", "displays": "screen", "system_audio": "system_audio",
           "system-audio": "system_audio", "systemaudio": "system_audio", "kernel": "kernel", "kernels": "kernel",
           "cells": "kernel", "notebook": "kernel"}
EPOCH_MIN = 1e9   # a time below this is seconds from the session start, not an epoch second


class Channel:
    def __init__(self, **kw: Any) -> None:
        self.id = kw.get("channel_id") or kw.get("id")
        self.name = kw.get("name")
        self.type = kw.get("type")
        self.store = bool(kw.get("store", False))
        self.is_primary = bool(kw.get("is_primary", False))

    def __repr__(self) -> str:
        return f"Channel(id={self.id}, type={self.type}, name={self.name}, is_primary={self.is_primary})"


class CaptureSession:
    def __init__(self, _connection, id: str, collection_id: str = "default", **kw: Any) -> None:
        self._connection = _connection
        self.id = id
        self.collection_id = collection_id
        self._update(kw)

    def _update(self, d: dict) -> None:
        self.end_user_id = d.get("end_user_id")
        self.client_id = d.get("client_id")
        self.status = d.get("status")
        self.callback_url = d.get("callback_url")
        self.exported_video_id = d.get("exported_video_id")
        self.export_status = d.get("export_status")
        self.metadata = d.get("metadata") or {}
        self.created_at = d.get("created_at")
        self.started_at = d.get("started_at")
        self.stopped_at = d.get("stopped_at")
        self.error = d.get("error")
        self.channels = [Channel(**c) for c in d.get("channels") or []]
        self.primary_video_channel_id = d.get("primary_video_channel_id")
        self.rtstreams = [RTStream(self._connection, **dict(r, id=r.get("id") or r.get("rtstream_id")))
                          for r in d.get("rtstreams") or [] if isinstance(r, dict)]
        self._raw = d

    def __repr__(self) -> str:
        return (f"CaptureSession(id={self.id}, status={self.status}, collection_id={self.collection_id}, "
                f"end_user_id={self.end_user_id}, rtstreams={len(self.rtstreams)})")

    def to_dict(self) -> dict:
        return dict(self._raw, id=self.id, collection_id=self.collection_id)

    @property
    def displays(self) -> list[Channel]:
        return [c for c in self.channels if c.type == "video"]

    def get_rtstream(self, category: str) -> list[RTStream]:
        want = ALIASES.get(category.lower().strip(), category.lower().strip())
        return [r for r in self.rtstreams if (r.channel_id or "").lower() == want]

    def refresh(self) -> "CaptureSession":
        d = self._connection.get(f"collection/{self.collection_id}/capture/session/{self.id}")
        self._update(d)
        return self

    def wait_for(self, *statuses: str, timeout: float = 60.0, interval: float = 0.25) -> "CaptureSession":
        """Poll until the session reaches one of ``statuses`` (e.g. "active")."""
        deadline = time.time() + timeout
        while True:
            self.refresh()
            if self.status in statuses:
                return self
            if self.status == "failed" and "failed" not in statuses:
                from ..errors import CaptureError
                raise CaptureError(f"capture session {self.id} failed: {self.error}")
            if time.time() > deadline:
                raise TimeoutError(f"capture session {self.id} is {self.status!r}, not {statuses} after "
                                   f"{timeout:.0f}s")
            time.sleep(interval)

    def export(self, video_channel_id: str | None = None, ws_connection_id: str | None = None,
               wait: bool = False, timeout: float = 600, progress: bool = False) -> dict:
        body = {k: v for k, v in {"video_channel_id": video_channel_id, "connection_id": ws_connection_id}.items()
                if v}
        d = self._connection.post(f"collection/{self.collection_id}/capture/session/{self.id}/export", body)
        if not wait:
            return d
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=100, desc=f"export {self.id}", unit="%")
        deadline = time.time() + timeout
        while d.get("export_status") == "exporting" and time.time() < deadline:
            if bar is not None:
                bar.n = int(d.get("progress", 0) * 100)
                bar.refresh()
            time.sleep(0.5)
            d = self._connection.post(f"collection/{self.collection_id}/capture/session/{self.id}/export", body)
        if bar is not None:
            bar.n = 100
            bar.close()
        self.refresh()
        return d

    # ---- notebook helpers
    def events(self, channel: str | None = None, limit: int = 10000) -> list:
        from ..events import Event
        d = self._connection.get(f"collection/{self.collection_id}/events", session_id=self.id, channel=channel,
                                 limit=limit)
        return [Event.from_row(r) for r in d.get("events", [])]

    def events_df(self, channel: str | None = None):
        from ..frames import events_frame
        return events_frame(self.events(channel), session_start=self.started_at or self.created_at)

    def context(self, t0: Any = None, t1: Any = None, pad: float = 5.0, clip: bool = True):
        """What was said and shown around a moment, as a DataFrame (see :func:`vdbnb.frames.context_frame`).

        ``t0``/``t1``: epoch seconds, seconds from the session start (below 1e9), or pandas Timestamps; or pass
        one row of :meth:`events_df` (a cell, a transcript line, ...), an :class:`~vdbnb.events.Event` or an event
        id as ``t0`` to take its start and end. ``pad`` widens the window on both sides. With ``clip``,
        ``df.attrs["clip_url"]`` (and the ``clip_url`` column) is a playable MP4 of the window — the session's
        primary display with its audio — and ``df.attrs["player_url"]`` a page that plays it."""
        from ..frames import context_frame
        df = self.events_df()
        t0, t1 = self._span(t0, t1, df)
        out = context_frame(df, t0, t1, pad)
        url = player = None
        if clip:
            url, player = self._clip(t0 - pad, t1 + pad)
        out["clip_url"] = url
        out.attrs.update({"clip_url": url, "player_url": player, "session_id": self.id})
        return out

    def _span(self, t0: Any, t1: Any, df) -> tuple[float, float]:
        import pandas as pd

        from ..events import Event
        if isinstance(t0, str):   # an event id
            hit = df[df["id"] == t0]
            if hit.empty:
                raise ValueError(f"no event {t0!r} in capture session {self.id}")
            t0 = hit.iloc[0]
        if isinstance(t0, (pd.Series, dict, Event)):   # a row: its own span
            row = t0.row() if isinstance(t0, Event) else t0
            start = _num(row.get("start"))
            start = start if start is not None else _num(row.get("captured_at"))
            end = _num(row.get("end"))
            t0, t1 = start, t1 if t1 is not None else (end if end is not None else start)
        if t0 is None:
            raise ValueError("context() needs a time (t0, t1) or a row of events_df()")
        s0 = self.started_at or self.created_at or 0.0

        def epoch(v: Any) -> float:
            if isinstance(v, pd.Timestamp):
                return v.timestamp()
            v = float(v)
            return v + s0 if v < EPOCH_MIN else v
        a = epoch(t0)
        b = epoch(t1) if t1 is not None else a
        if b < a:
            raise ValueError(f"context(): t1 ({b}) is before t0 ({a})")
        return a, b

    def _clip(self, start: float, end: float) -> tuple[str | None, str | None]:
        """A clip of [start, end] from the primary display (with the session's audio), else from the audio."""
        streams = [r for r in self.rtstreams if r.channel_id == "screen"]
        streams.sort(key=lambda r: not r.is_primary)
        streams += [r for r in self.rtstreams if r.channel_id in ("mic", "system_audio")]
        if not streams:
            return None, None
        rts = streams[0]
        player = rts.generate_stream(max(0.0, start), end + 1)
        return rts.stream_url, player

    def plot(self, ax=None):
        from ..plots import timeline
        return timeline(self.events_df(), ax=ax)


def _num(v: Any) -> float | None:
    """A float, or None for None/NaN/NaT."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f
