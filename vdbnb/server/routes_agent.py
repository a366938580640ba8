"""vdbnb extensions for AI agents (``vdbnb mcp``): read-only agent tokens, who-am-I, the tool-call log (an
``agent`` event through the one event bus) and the latest frame of a display."""
from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query, Request

from ..events import AGENT, Event
from .auth import Principal
from .context import DEFAULT_COLLECTION, admin, ctx_of, reader
from .models import MAX_EPOCH_S, AgentTokenRequest, ToolCall
from .routes_capture import collection_row, ok
from .routes_rtstream import rts_row
from .store import now

router = APIRouter(tags=["agents"])
MAX_ARGS_CHARS = 4000


@router.post("/agent/token")
def generate_agent_token(request: Request, body: AgentTokenRequest | None = None, _: Principal = Depends(admin)):
    """A read-only token for an AI agent (``at-…``): it reads sessions, events, transcripts, search and frames
    of one collection, and nothing else. Give this to an agent instead of the API key."""
    body = body or AgentTokenRequest()
    cid = request.headers.get("x-collection-id") or DEFAULT_COLLECTION
    collection_row(request, cid)
    return ok(ctx_of(request).auth.mint_agent_token(cid, body.expires_in, body.name))


@router.get("/agent/whoami")
def whoami(request: Request, p: Principal = Depends(reader)):
    """What the credential sent is (the API key or an agent token): its kind, scope, collection, public id
    and expiry (never the secret)."""
    return ok({"kind": p.kind, "scope": p.scope or ("admin" if p.is_admin else None), "can_read": p.can_read,
               "collection_id": p.collection_id, "token_id": p.token_id, "expires_at": p.expires_at})


def _redacted(value):
    from ..ai.secrets import redact
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


@router.post("/collection/{cid}/agent/tool_call")
def log_tool_call(cid: str, body: ToolCall, request: Request, p: Principal = Depends(reader)):
    """Record one tool call of an agent as an ``agent`` event (stored, on the websocket): who asked what, when,
    and how it ended. Secrets in the arguments are redacted before they are stored."""
    collection_row(request, cid, p)
    args = _redacted(body.arguments)
    if len(json.dumps(args, default=str)) > MAX_ARGS_CHARS:
        args = {"truncated": json.dumps(args, default=str)[:MAX_ARGS_CHARS]}
    caller = _redacted(body.caller)
    who = caller.get("client") or caller.get("transport") or "an agent"
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
    t = now()
    ev = Event(channel=AGENT, event="agent.tool_call", collection_id=cid, session_id=body.session_id,
               text=f"{who} called {body.tool}({shown}): {body.outcome}", label=body.tool, engine="vdbnb-mcp",
               start=body.asked_at or t, end=t, captured_at=body.asked_at or t, processed_at=t,
               data={"tool": body.tool, "arguments": args, "caller": caller, "outcome": body.outcome,
                     "detail": _redacted(body.detail) if body.detail else None, "results": body.results,
                     "duration_ms": body.duration_ms,
                     "logged_by": {"kind": p.kind, "token_id": p.token_id}})
    ctx_of(request).bus.emit(ev)
    return ok({"event_id": ev.id})


@router.get("/rtstream/{rid}/frame")
def latest_frame(rid: str, request: Request, at: float | None = Query(None, gt=0, le=MAX_EPOCH_S),
                 format: str = Query("png", pattern="^(png|jpeg)$"), max_width: int | None = Query(None, ge=64, le=7680),
                 p: Principal = Depends(reader)):
    """vdbnb extension: the newest stored frame of a screen RTStream (or the newest at or before ``at``, epoch
    seconds) as base64 PNG/JPEG with its OCR text and window title. Every line of text that holds a secret is
    blacked out in the image and redacted in the text; excluded windows were blacked out by the recorder."""
    from .screenshot import screen_frame
    r = rts_row(request, rid, p)
    return ok(screen_frame(ctx_of(request), r, at, format, max_width))
