"""``vdbnb.connect()`` and ``Connection``: the backend client (names as the official SDK's)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..config import KEY_FILE, Settings
from ..errors import AuthenticationError
from ._http import HttpClient
from .collection import Collection
from ..server.lifecycle import DEFAULT_IDLE_EXIT_S
from .embedded import ensure_server
from .session import CaptureSession
from .websocket import EventListener, WebSocketConnection


class Connection(HttpClient):
    def __init__(self, api_key: str, base_url: str, data_dir: Path | None = None, **headers: str) -> None:
        super().__init__(api_key, base_url, **headers)
        self.collection_id = "default"
        self.data_dir = data_dir
        self._idle_exit_s = DEFAULT_IDLE_EXIT_S

    def __repr__(self) -> str:
        return f"Connection(base_url={self.base_url})"

    def _reconnect(self) -> bool:
        # the embedded server exits when idle (vdbnb/server/lifecycle.py): start it again, maybe on a new port
        if self.data_dir is None:
            return False
        self._use_url(ensure_server(self.data_dir, idle_exit_s=self._idle_exit_s)["url"])
        return True

    # ---- collections
    def get_collection(self, collection_id: str = "default") -> Collection:
        d = self.get(f"collection/{collection_id}")
        return Collection(self, d.get("id", collection_id), d.get("name"), d.get("description"),
                          d.get("is_public", False))

    def get_collections(self) -> list[Collection]:
        d = self.get("collection")
        return [Collection(self, c["id"], c.get("name"), c.get("description"), c.get("is_public", False))
                for c in d.get("collections", [])]

    def create_collection(self, name: str, description: str | None = None, is_public: bool = False) -> Collection:
        d = self.post("collection", {"name": name, "description": description, "is_public": is_public})
        return Collection(self, d["id"], d.get("name"), d.get("description"), d.get("is_public", False))

    # ---- capture sessions
    def create_capture_session(self, end_user_id: str, collection_id: str = "default",
                               callback_url: str | None = None, ws_connection_id: str | None = None,
                               metadata: dict | None = None) -> CaptureSession:
        body = {"end_user_id": end_user_id}
        for k, v in (("callback_url", callback_url), ("ws_connection_id", ws_connection_id), ("metadata", metadata)):
            if v:
                body[k] = v
        d = self.post(f"collection/{collection_id}/capture/session", body)
        sid = d.pop("session_id", None) or d.pop("id")
        d.pop("id", None)
        return CaptureSession(self, sid, d.pop("collection_id", collection_id), **d)

    def get_capture_session(self, session_id: str, collection_id: str = "default") -> CaptureSession:
        d = self.get(f"collection/{collection_id}/capture/session/{session_id}")
        if isinstance(d.get("data"), dict):
            d = d["data"]
        d = dict(d)
        sid = d.pop("id", None) or d.pop("session_id", session_id)
        d.pop("session_id", None)
        return CaptureSession(self, sid, d.pop("collection_id", collection_id), **d)

    def delete_capture_session(self, session_id: str, collection_id: str = "default") -> dict:
        """vdbnb extension: delete a stopped session with everything derived from it; returns the counts."""
        return self.request("DELETE", f"collection/{collection_id}/capture/session/{session_id}")

    def list_capture_sessions(self, collection_id: str = "default", status: str | None = None) -> list[CaptureSession]:
        d = self.get(f"collection/{collection_id}/capture/session", status=status)
        out = []
        for s in d.get("sessions", []):
            s = dict(s)
            sid = s.pop("id", None) or s.pop("session_id")
            s.pop("session_id", None)
            out.append(CaptureSession(self, sid, s.pop("collection_id", collection_id), **s))
        return out

    def generate_client_token(self, expires_in: int = 86400) -> str:
        return self.post("capture/session/token", {"expires_in": expires_in}).get("token")

    # ---- agents (vdbnb extensions, used by `vdbnb mcp`)
    def generate_agent_token(self, expires_in: int = 30 * 86400, name: str | None = None) -> str:
        """A read-only token (``at-…``) for an AI agent: it reads sessions, events, transcripts, search and
        screen frames, and can do nothing else. Give it to an agent instead of the API key."""
        return self.post("agent/token", {"expires_in": expires_in, "name": name}).get("token")

    def whoami(self) -> dict:
        """What this connection's credential is: ``kind`` (api_key | agent_token | client_token), ``scope``,
        ``token_id`` (a public id, never the secret), ``expires_at``."""
        return self.get("agent/whoami")

    def log_tool_call(self, tool: str, arguments: dict, caller: dict, outcome: str = "ok", detail: str | None = None,
                      results: int | None = None, duration_ms: float | None = None, session_id: str | None = None,
                      asked_at: float | None = None, collection_id: str = "default") -> str:
        """Record an agent's tool call as an ``agent`` event on the server (who asked what, when, how it ended)."""
        body = {"tool": tool, "arguments": arguments, "caller": caller, "outcome": outcome, "detail": detail,
                "results": results, "duration_ms": duration_ms, "session_id": session_id, "asked_at": asked_at}
        return self.post(f"collection/{collection_id}/agent/tool_call",
                         {k: v for k, v in body.items() if v is not None}).get("event_id")

    # ---- events
    def connect_websocket(self, collection_id: str = "default") -> WebSocketConnection:
        return WebSocketConnection(self.get(f"collection/{collection_id}/websocket")["websocket_url"])

    def listen(self, on_event: Callable, collection_id: str = "default") -> EventListener:
        """Receive every event of the collection on a background thread (notebook-friendly)."""
        return EventListener(lambda: self.get(f"collection/{collection_id}/websocket")["websocket_url"],
                             on_event).start()

    def create_event(self, event_prompt: str, label: str) -> str:
        return self.post("rtstream/event", {"event_prompt": event_prompt, "label": label}).get("event_id")

    def list_events(self) -> list[dict]:
        return self.get("rtstream/event").get("events", [])

    def health(self) -> dict:
        return self.get("health")


def connect(api_key: str | None = None, base_url: str | None = None, data_dir: str | os.PathLike | None = None,
            **headers: str) -> Connection:
    """Connect to a VideoDB-compatible server.

    With no ``base_url`` (and no ``VDBNB_URL``) the embedded server for the data dir is started in the
    background (or reused) on 127.0.0.1 and its API key is read from the data dir. With ``base_url`` any
    compatible server is used, VideoDB's cloud included (``https://api.videodb.io``).
    """
    settings = Settings.from_env(data_dir=data_dir)
    base_url = base_url or settings.url
    api_key = api_key or settings.api_key
    ddir = None
    if not base_url:
        ddir = settings.data_dir
        info = ensure_server(ddir, idle_exit_s=settings.idle_exit_s)
        base_url = info["url"]
        api_key = api_key or info["api_key"]
    else:
        api_key = api_key or settings.videodb_api_key
        if not api_key and data_dir:
            kf = settings.data_dir / KEY_FILE
            api_key = kf.read_text().strip() if kf.exists() else None
    if not api_key:
        raise AuthenticationError(f"No API key for {base_url}: pass api_key=, or set VDBNB_API_KEY "
                                  "(VIDEO_DB_API_KEY for VideoDB's cloud).")
    conn = Connection(api_key, base_url, data_dir=ddir, **headers)
    conn._idle_exit_s = settings.idle_exit_s
    return conn
