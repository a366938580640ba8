"""Collection: capture sessions, rtstreams and collection-wide search."""
from __future__ import annotations

from typing import Any

from .results import RTStreamSearchResult
from .rtstream import RTStream
from .session import CaptureSession


class Collection:
    def __init__(self, _connection, id: str, name: str | None = None, description: str | None = None,
                 is_public: bool = False) -> None:
        self._connection = _connection
        self.id = id
        self.name = name
        self.description = description
        self.is_public = is_public

    def __repr__(self) -> str:
        return f"Collection(id={self.id}, name={self.name}, description={self.description})"

    def create_capture_session(self, end_user_id: str, callback_url: str | None = None,
                               ws_connection_id: str | None = None, metadata: dict | None = None) -> CaptureSession:
        return self._connection.create_capture_session(end_user_id, self.id, callback_url, ws_connection_id,
                                                       metadata)

    def get_capture_session(self, session_id: str) -> CaptureSession:
        return self._connection.get_capture_session(session_id, self.id)

    def list_capture_sessions(self, status: str | None = None) -> list[CaptureSession]:
        return self._connection.list_capture_sessions(self.id, status)

    def get_rtstream(self, id: str) -> RTStream:
        return RTStream(self._connection, **self._connection.get(f"rtstream/{id}"))

    def list_rtstreams(self, limit: int | None = None, offset: int | None = None, status: str | None = None,
                       name: str | None = None, ordering: str | None = None) -> list[RTStream]:
        d = self._connection.get("rtstream", collection_id=self.id, limit=limit, offset=offset, status=status,
                                 name=name, ordering=ordering)
        return [RTStream(self._connection, **r) for r in d.get("results", [])]

    def search(self, query: str, namespace: str = "rtstream", result_threshold: int | None = None,
               score_threshold: float | None = None, filter: Any = None, **kw: Any) -> RTStreamSearchResult:
        body = {k: v for k, v in {"query": query, "result_threshold": result_threshold,
                                  "score_threshold": score_threshold, "filter": filter,
                                  "scene_index_id": kw.get("scene_index_id") or kw.get("index_id")}.items()
                if v is not None}
        d = self._connection.post(f"rtstream/collection/{self.id}/search", body)
        return RTStreamSearchResult(self._connection, self.id, d.get("results", []), query=query)

    legacy_search = search
