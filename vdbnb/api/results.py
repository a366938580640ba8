"""Search results: shots with playable clips, and a DataFrame view."""
from __future__ import annotations

import html
from typing import Any


class RTStreamShot:
    def __init__(self, _connection, **kw: Any) -> None:
        self._connection = _connection
        self.rtstream_id = kw.get("rtstream_id")
        self.rtstream_name = kw.get("rtstream_name")
        self.session_id = kw.get("session_id")
        self.channel_id = kw.get("channel_id")
        self.kind = kw.get("kind")
        self.start = kw.get("start")
        self.end = kw.get("end")
        self.text = kw.get("text")
        self.search_score = kw.get("score")
        self.scene_index_id = kw.get("scene_index_id")
        self.scene_index_name = kw.get("scene_index_name")
        self.metadata = kw.get("metadata") or {}
        self.stream_url = kw.get("stream_url")
        self.player_url = kw.get("player_url")

    def __repr__(self) -> str:
        return (f"RTStreamShot(rtstream_id={self.rtstream_id}, start={self.start}, end={self.end}, "
                f"text={self.text!r}, search_score={self.search_score})")

    def generate_stream(self) -> str:
        if not self.stream_url:
            s, e = int(self.start), max(int(self.end + 0.999), int(self.start) + 1)
            d = self._connection.get(f"rtstream/{self.rtstream_id}/stream", start=s, end=e)
            self.stream_url, self.player_url = d.get("stream_url"), d.get("player_url")
        return self.stream_url

    def play(self) -> str:
        return self.generate_stream()

    def _repr_html_(self) -> str:
        url = self.generate_stream()
        return (f"<div><b>{html.escape(str(self.text or ''))}</b> <small>score {self.search_score:.3f}</small><br>"
                f"<video src='{html.escape(url)}' controls preload='metadata' style='max-width:480px'></video></div>")


class RTStreamSearchResult:
    def __init__(self, _connection, collection_id: str | None, shots: list[dict], query: str | None = None):
        self._connection = _connection
        self.collection_id = collection_id
        self.query = query
        self.shots = [RTStreamShot(_connection, **s) for s in shots]

    def get_shots(self) -> list[RTStreamShot]:
        return self.shots

    def __len__(self) -> int:
        return len(self.shots)

    def __iter__(self):
        return iter(self.shots)

    def __repr__(self) -> str:
        return f"RTStreamSearchResult(query={self.query!r}, shots={len(self.shots)})"

    @property
    def df(self):
        import pandas as pd
        rows = [{"score": s.search_score, "text": s.text, "start": s.start, "end": s.end,
                 "ts": pd.to_datetime(s.start, unit="s", utc=True) if s.start else None,
                 "duration": (s.end - s.start) if s.start and s.end else None, "channel_id": s.channel_id,
                 "kind": s.kind, "rtstream_id": s.rtstream_id, "session_id": s.session_id,
                 "scene_index_id": s.scene_index_id} for s in self.shots]
        return pd.DataFrame(rows, columns=["score", "text", "ts", "start", "end", "duration", "channel_id", "kind",
                                           "rtstream_id", "session_id", "scene_index_id"])

    def _repr_html_(self) -> str:
        if not self.shots:
            return f"<i>no results for {html.escape(str(self.query))!r}</i>"
        items = []
        for s in self.shots[:10]:
            try:
                items.append(s._repr_html_())
            except Exception as e:  # a clip that cannot be generated still shows its text
                items.append(f"<div><b>{html.escape(str(s.text))}</b> <small>(no clip: {html.escape(str(e))})"
                             "</small></div>")
        return f"<div><h4>{len(self.shots)} results for {html.escape(str(self.query))!r}</h4>{''.join(items)}</div>"
