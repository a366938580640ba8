"""CaptureSession (names as the official SDK's, plus refresh(), events_df(), plot())."""
from __future__ import annotations

import time
from typing import Any

from .rtstream import RTStream

ALIASES = {"mic": "mic", "mics": "mic", "microphone": "mic", "screen": "screen", "screens": "screen",
           "display": "screen", "displays": "screen", "system_audio": "system_audio",
           "system-audio": "system_audio", "systemaudio": "system_audio"}


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

    def plot(self, ax=None):
        from ..plots import timeline
        return timeline(self.events_df(), ax=ax)
