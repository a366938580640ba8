"""The backend client: a small public surface over the HTTP core (names as the official SDK's)."""
from .collection import Collection
from .connection import Connection, connect
from .results import RTStreamSearchResult, RTStreamShot
from .rtstream import RTStream, RTStreamSceneIndex
from .session import CaptureSession
from .websocket import EventListener, WebSocketConnection

__all__ = ["connect", "Connection", "Collection", "CaptureSession", "RTStream", "RTStreamSceneIndex",
           "RTStreamSearchResult", "RTStreamShot", "WebSocketConnection", "EventListener"]
