"""Request bodies (pydantic), lenient like VideoDB's API: unknown fields are ignored."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


# bounds of query parameters: past them SQLite's 64-bit integers (OFFSET) and epoch arithmetic overflow
MAX_OFFSET = 10**9
MAX_PAGE = 10**6
MAX_EPOCH_S = 1e11  # seconds since 1970: the year 5138


def epoch_q():
    """An optional epoch-seconds query parameter (a filter): finite and within range, else 400. (A new
    FieldInfo per parameter: FastAPI binds each one to its parameter's name.)"""
    return Query(None, ge=-MAX_EPOCH_S, le=MAX_EPOCH_S, allow_inf_nan=False)


def callback_url(v: str | None) -> str | None:
    """A webhook URL: http(s) with a host, no credentials in it, no spaces or control characters."""
    if v is None or v == "":
        return None
    from urllib.parse import urlsplit
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError("callback_url must not contain spaces or control characters")
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ValueError(f"callback_url is not a URL ({e})") from None
    if u.scheme.lower() not in ("http", "https") or not u.hostname:
        raise ValueError("callback_url must be an http:// or https:// URL with a host, e.g. "
                         "https://example.com/hooks/vdbnb")
    if u.username or u.password:
        raise ValueError("callback_url must not hold credentials (user:password@); verify webhooks with their "
                         "signature instead (vdbnb info shows the webhook secret)")
    return v


CallbackURL = Annotated[Optional[str], Field(max_length=2048), AfterValidator(callback_url)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=(), populate_by_name=True)


class CreateSession(Body):
    end_user_id: str = Field(min_length=1, max_length=256)
    callback_url: CallbackURL = None
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
    callback_url: CallbackURL = None
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


Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=64)]
Epoch = Annotated[float, Field(ge=-MAX_EPOCH_S, le=MAX_EPOCH_S, allow_inf_nan=False)]


class SearchFilter(BaseModel):
    """vdbnb's search filters. Unknown keys are refused (a filter silently ignored returns wrong results)."""
    model_config = ConfigDict(extra="forbid")
    session_id: Optional[str] = Field(None, min_length=1, max_length=128)
    rtstream_id: Optional[str] = Field(None, min_length=1, max_length=128)
    kind: Optional[str | Names] = None
    kinds: Optional[str | Names] = None
    type: Optional[str | Names] = None
    channel_id: Optional[str | Names] = None
    channel: Optional[str | Names] = None
    start: Optional[Epoch] = None
    end: Optional[Epoch] = None

    @model_validator(mode="after")
    def _order(self):
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("filter.end must not be before filter.start (both epoch seconds)")
        for k in ("kind", "kinds", "type", "channel_id", "channel"):
            v = getattr(self, k)
            if isinstance(v, str) and not (0 < len(v) <= 128):
                raise ValueError(f"filter.{k} must be 1-128 characters")
        return self


def _filter(v: Any) -> SearchFilter | None:
    """A filter as vdbnb writes it ({"start": ..., "kind": ...}) or as the videodb SDK sends it (a list of
    such objects, combined); anything else is refused."""
    if v is None:
        return None
    if isinstance(v, list):
        merged: dict = {}
        for i, part in enumerate(v):
            if not isinstance(part, dict):
                raise ValueError(f"filter[{i}] must be an object like {{\"start\": 1718000000}}")
            merged.update(part)
        v = merged
    if not isinstance(v, dict):
        raise ValueError("filter must be an object (or a list of objects) with keys among: "
                         + ", ".join(SearchFilter.model_fields))
    return SearchFilter.model_validate(v)


class SearchRequest(Body):
    query: str = Field(min_length=1, max_length=4096)
    scene_index_id: Optional[str] = Field(None, max_length=128)
    index_id: Optional[str] = Field(None, max_length=128)
    result_threshold: Optional[int] = Field(None, ge=1, le=1000)
    score_threshold: Optional[float] = Field(None, ge=0, le=1)
    dynamic_score_percentage: Optional[float] = Field(None, ge=0, le=100)
    filter: Annotated[Optional[Any], AfterValidator(_filter)] = None
    namespace: Optional[str] = Field(None, max_length=64)


class EventRequest(Body):
    event_prompt: str = Field(min_length=1, max_length=20000)
    label: str = Field(min_length=1, max_length=256)


class AlertRequest(Body):
    event_id: str = Field(min_length=1, max_length=128)
    callback_url: CallbackURL = None
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
