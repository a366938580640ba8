"""RTStream, its scene indexes and search results (names as the official SDK's)."""
from __future__ import annotations

from typing import Any

from .results import RTStreamSearchResult


class RTStream:
    def __init__(self, _connection, id: str, **kw: Any) -> None:
        self._connection = _connection
        self.id = id
        self.name = kw.get("name")
        self.collection_id = kw.get("collection_id")
        self.session_id = kw.get("session_id")
        self.created_at = kw.get("created_at")
        self.sample_rate = kw.get("sample_rate")
        self.status = kw.get("status")
        self.channel_id = kw.get("channel_id")
        self.source_channel_id = kw.get("source_channel_id")
        self.media_types = kw.get("media_types") or []
        self.is_primary = bool(kw.get("is_primary", False))
        self.stream_url = kw.get("stream_url")
        self.player_url = kw.get("player_url")

    def __repr__(self) -> str:
        return (f"RTStream(id={self.id}, name={self.name}, channel_id={self.channel_id}, status={self.status})")

    # ---- lifecycle
    def start(self) -> None:
        self._connection.patch(f"rtstream/{self.id}/status", {"action": "start"})
        self.status = "connected"

    def stop(self) -> None:
        self._connection.patch(f"rtstream/{self.id}/status", {"action": "stop"})
        self.status = "stopped"

    def refresh(self) -> "RTStream":
        d = self._connection.get(f"rtstream/{self.id}")
        self.__init__(self._connection, **d)
        return self

    # ---- transcripts
    def start_transcript(self, ws_connection_id: str | None = None, engine: str | None = None) -> dict:
        return self._connection.post(f"rtstream/{self.id}/transcription",
                                     _drop({"action": "start", "engine": engine,
                                            "ws_connection_id": ws_connection_id}))

    def stop_transcript(self, engine: str | None = None) -> dict:
        return self._connection.post(f"rtstream/{self.id}/transcription", _drop({"action": "stop",
                                                                                  "engine": engine}))

    def get_transcript(self, page: int = 1, page_size: int = 100, start: float | None = None,
                       end: float | None = None, since: float | None = None, engine: str | None = None) -> dict:
        return self._connection.get(f"rtstream/{self.id}/transcription", page=page, page_size=page_size,
                                    start=start, end=end, since=since, engine=engine)

    # ---- indexes
    def _index(self, body: dict) -> "RTStreamSceneIndex | None":
        d = self._connection.post(f"rtstream/{self.id}/index/scene", body)
        return RTStreamSceneIndex(self._connection, **dict(d, rtstream_id=self.id)) if d else None

    def index_visuals(self, prompt: str = "Describe what is on the screen", batch_config: dict | None = None,
                      model_name: str | None = None, model_config: dict | None = None, name: str | None = None,
                      ws_connection_id: str | None = None) -> "RTStreamSceneIndex | None":
        cfg = None
        if batch_config:
            cfg = {"time": batch_config.get("value", 2), "frame_count": batch_config.get("frame_count", 1)}
        return self._index(_drop({"extraction_type": "time", "extraction_config": cfg, "prompt": prompt,
                                  "model_name": model_name, "model_config": model_config or {}, "name": name,
                                  "ws_connection_id": ws_connection_id}, keep=("extraction_config", "name",
                                                                              "model_name")))

    def index_audio(self, prompt: str = "Summarise what was said", batch_config: dict | None = None,
                    model_name: str | None = None, model_config: dict | None = None, name: str | None = None,
                    ws_connection_id: str | None = None) -> "RTStreamSceneIndex | None":
        batch_config = batch_config or {"type": "word", "value": 10}
        cfg = {"segmenter": batch_config.get("type", "word"), "segmentation_value": batch_config.get("value", 10)}
        return self._index(_drop({"extraction_type": "transcript", "extraction_config": cfg, "prompt": prompt,
                                  "model_name": model_name, "model_config": model_config or {}, "name": name,
                                  "ws_connection_id": ws_connection_id}, keep=("name", "model_name")))

    def list_scene_indexes(self) -> list["RTStreamSceneIndex"]:
        d = self._connection.get(f"rtstream/{self.id}/index/scene")
        return [RTStreamSceneIndex(self._connection, **dict(x, rtstream_id=self.id)) for x in d.get("scene_indexes", [])]

    def get_scene_index(self, index_id: str) -> "RTStreamSceneIndex":
        d = self._connection.get(f"rtstream/{self.id}/index/{index_id}")
        return RTStreamSceneIndex(self._connection, **dict(d, rtstream_id=self.id))

    # ---- search, clips, export
    def search(self, query: str, index_id: str | None = None, result_threshold: int | None = None,
               score_threshold: float | None = None, dynamic_score_percentage: float | None = None,
               filter: Any = None) -> RTStreamSearchResult:
        d = self._connection.post(f"rtstream/{self.id}/search", _drop({
            "query": query, "scene_index_id": index_id, "result_threshold": result_threshold,
            "score_threshold": score_threshold, "dynamic_score_percentage": dynamic_score_percentage,
            "filter": filter}))
        shots = [dict(r, rtstream_id=r.get("rtstream_id") or self.id,
                      rtstream_name=r.get("rtstream_name") or self.name) for r in d.get("results", [])]
        return RTStreamSearchResult(self._connection, self.collection_id, shots, query=query)

    def generate_stream(self, start: float, end: float, player_config: dict | None = None) -> str:
        params = {"start": int(start), "end": int(end) if int(end) > int(start) else int(start) + 1}
        d = self._connection.get(f"rtstream/{self.id}/stream", **params)
        self.stream_url, self.player_url = d.get("stream_url"), d.get("player_url")
        return self.player_url

    def export(self, name: str | None = None) -> dict:
        return self._connection.post(f"rtstream/{self.id}/export", _drop({"name": name}))

    def get_frame(self, at: float | None = None, format: str = "png", max_width: int | None = None) -> dict:
        """vdbnb extension: the newest frame of a screen stream (or the newest at or before ``at``, epoch s):
        ``image_b64`` (PNG/JPEG), ``ocr_text``, ``window_title``, ``time``; secrets blacked out and redacted."""
        return self._connection.get(f"rtstream/{self.id}/frame", at=at, format=format, max_width=max_width)


class RTStreamSceneIndex:
    def __init__(self, _connection, rtstream_id: str, **kw: Any) -> None:
        self._connection = _connection
        self.rtstream_id = rtstream_id
        self.rtstream_index_id = kw.get("rtstream_index_id") or kw.get("id")
        self.extraction_type = kw.get("extraction_type")
        self.extraction_config = kw.get("extraction_config")
        self.prompt = kw.get("prompt")
        self.name = kw.get("name")
        self.status = kw.get("status")
        self.engine = kw.get("engine")

    def __repr__(self) -> str:
        return (f"RTStreamSceneIndex(rtstream_index_id={self.rtstream_index_id}, rtstream_id={self.rtstream_id}, "
                f"extraction_type={self.extraction_type}, name={self.name}, status={self.status})")

    def get_scenes(self, start: float | None = None, end: float | None = None, page: int = 1,
                   page_size: int = 100) -> dict:
        params = {"page": page, "page_size": page_size}
        if start and end:
            params.update(start=start, end=end)
        d = self._connection.get(f"rtstream/{self.rtstream_id}/index/scene/{self.rtstream_index_id}", **params)
        return {"scenes": d.get("scene_index_records", []), "next_page": d.get("next_page")}

    def scenes_df(self, start: float | None = None, end: float | None = None):
        """Every scene so far as a DataFrame (:func:`vdbnb.frames.scenes_frame`): ``ts`` in UTC and ``t`` in
        seconds from the session start, then the text, engine, OCR text and window title."""
        from ..frames import scenes_frame
        records, page = [], 1
        while page:
            d = self.get_scenes(start, end, page=page, page_size=1000)
            records += d["scenes"]
            page = d["next_page"]
        rts = self._connection.get(f"rtstream/{self.rtstream_id}")
        session_start = None
        if rts.get("session_id"):
            s = self._connection.get_capture_session(rts["session_id"], rts.get("collection_id") or "default")
            session_start = getattr(s, "started_at", None) or getattr(s, "created_at", None)
        return scenes_frame(records, session_start)

    def start(self) -> None:
        self._connection.patch(f"rtstream/{self.rtstream_id}/index/scene/{self.rtstream_index_id}/status",
                               {"action": "start"})
        self.status = "connected"

    def stop(self) -> None:
        self._connection.patch(f"rtstream/{self.rtstream_id}/index/scene/{self.rtstream_index_id}/status",
                               {"action": "stop"})
        self.status = "stopped"

    def create_alert(self, event_id: str, callback_url: str | None = None,
                     ws_connection_id: str | None = None) -> str:
        d = self._connection.post(f"rtstream/{self.rtstream_id}/index/{self.rtstream_index_id}/alert",
                                  _drop({"event_id": event_id, "callback_url": callback_url,
                                         "ws_connection_id": ws_connection_id}))
        return d.get("alert_id")

    def list_alerts(self) -> list[dict]:
        return self._connection.get(f"rtstream/{self.rtstream_id}/index/{self.rtstream_index_id}/alert").get(
            "alerts", [])

    def enable_alert(self, alert_id: str) -> None:
        self._connection.patch(f"rtstream/{self.rtstream_id}/index/{self.rtstream_index_id}/alert/{alert_id}/status",
                               {"action": "enable"})

    def disable_alert(self, alert_id: str) -> None:
        self._connection.patch(f"rtstream/{self.rtstream_id}/index/{self.rtstream_index_id}/alert/{alert_id}/status",
                               {"action": "disable"})


def _drop(d: dict, keep: tuple = ()) -> dict:
    return {k: v for k, v in d.items() if v is not None or k in keep}
