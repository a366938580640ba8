"""Request bodies (pydantic), lenient like VideoDB's API: unknown fields are ignored."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


# bounds of query parameters: past them SQLite's 64-bit integers (OFFSET) and epoch arithmetic overflow
MAX_OFFSET = 10**9
MAX_PAGE = 10**6
MAX_EPOCH_S = 1e11  # seconds since 1970: the year 5138


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=(), populate_by_name=True)


class CreateSession(Body):
    end_user_id: str = Field(min_length=1, max_length=256)
    callback_url: Optional[str] = Field(None, max_length=2048)
    ws_connection_id: Optional[str] = Field(None, max_length=128)
    metadata: Optional[dict[str, Any]] = None


class CreateCollection(Body):
    name: str = Field(min_length=1, max_length=256)
    description: Optional[str] = Field(None, max_length=4096)
    is_public: bool = False


class TokenRequest(Body):
    expires_in: int = Field(86400, ge=1, le=30 * 86400)
    user_id: Optional[str] = Field(None, max_length=256)


class ChannelSpec(Body):
    channel_id: Optional[str] = Field(None, max_length=256)
    id: Optional[str] = Field(None, max_length=256)
    type: Optional[Literal["audio", "video", "kernel"]] = None
    name: Optional[str] = Field(None, max_length=256)
    channel_name: Optional[str] = Field(None, max_length=256)
    store: bool = False
    is_primary: bool = False


class StartCapture(Body):
    session_id: str = Field(min_length=1, max_length=128)
    channels: list[ChannelSpec] = Field(min_length=1, max_length=64)
    callback_url: Optional[str] = Field(None, max_length=2048)
    ws_connection_id: Optional[str] = Field(None, max_length=128)
    primary_video_channel_id: Optional[str] = Field(None, max_length=256)


class ExportRequest(Body):
    video_channel_id: Optional[str] = Field(None, max_length=256)
    connection_id: Optional[str] = Field(None, max_length=128)


class Action(Body):
    action: Optional[Literal["start", "stop", "enable", "disable"]] = None
    status: Optional[Literal["enabled", "disabled", "started", "stopped"]] = None


class TranscriptionRequest(Body):
    action: Literal["start", "stop"]
    engine: Optional[str] = Field(None, max_length=64)
    ws_connection_id: Optional[str] = Field(None, max_length=128)


class IndexRequest(Body):
    extraction_type: Optional[Literal["time", "transcript", "shot"]] = "time"
    extraction_config: Optional[dict[str, Any]] = None
    prompt: Optional[str] = Field(None, max_length=20000)
    model_name: Optional[str] = Field(None, max_length=256)
    model_config_: Optional[dict[str, Any]] = Field(None, alias="model_config")
    name: Optional[str] = Field(None, max_length=256)
    ws_connection_id: Optional[str] = Field(None, max_length=128)
    sandbox_id: Optional[str] = Field(None, max_length=128)


class SearchRequest(Body):
    query: str = Field(min_length=1, max_length=4096)
    scene_index_id: Optional[str] = Field(None, max_length=128)
    index_id: Optional[str] = Field(None, max_length=128)
    result_threshold: Optional[int] = Field(None, ge=1, le=1000)
    score_threshold: Optional[float] = Field(None, ge=0, le=1)
    dynamic_score_percentage: Optional[float] = Field(None, ge=0, le=100)
    filter: Optional[Any] = None
    namespace: Optional[str] = Field(None, max_length=64)


class EventRequest(Body):
    event_prompt: str = Field(min_length=1, max_length=20000)
    label: str = Field(min_length=1, max_length=256)


class AlertRequest(Body):
    event_id: str = Field(min_length=1, max_length=128)
    callback_url: Optional[str] = Field(None, max_length=2048)
    ws_connection_id: Optional[str] = Field(None, max_length=128)


class RTStreamExport(Body):
    name: Optional[str] = Field(None, max_length=256)


class AgentTokenRequest(Body):
    expires_in: int = Field(30 * 86400, ge=60, le=30 * 86400)
    name: Optional[str] = Field(None, max_length=256)


class ToolCall(Body):
    """One tool call of an AI agent (``vdbnb mcp``), logged as an ``agent`` event."""
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)
    caller: dict[str, Any] = Field(default_factory=dict)   # transport, client name/version, credential id
    outcome: Literal["ok", "refused", "error"] = "ok"
    detail: Optional[str] = Field(None, max_length=4000)
    results: Optional[int] = Field(None, ge=0)
    duration_ms: Optional[float] = Field(None, ge=0)
    session_id: Optional[str] = Field(None, max_length=128)
    asked_at: Optional[float] = Field(None, gt=0, le=MAX_EPOCH_S)
