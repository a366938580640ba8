"""vdbnb extensions for the owner (API key only): media URL key rotation, deleting captures, retention,
webhook dead letters."""
from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from .auth import Principal
from .context import admin, ctx_of
from .routes_capture import ok
from .store import dec

router = APIRouter(tags=["security"])


@router.post("/security/media-key/rotate")
def rotate_media_key(request: Request, _: Principal = Depends(admin)):
    """A new media URL signing key: every stream/player URL handed out before stops working."""
    ctx_of(request).media_signer.rotate()
    return ok({"rotated": True, "media_url_ttl_s": ctx_of(request).media_signer.ttl})


@router.delete("/collection/{cid}/capture/session/{sid}", tags=["capture"])
def delete_capture_session(cid: str, sid: str, request: Request, _: Principal = Depends(admin)):
    """vdbnb extension: delete a stopped capture session with everything derived from it (media, events,
    transcripts, indexes, alerts, search rows and vectors, exports, clips, webhooks)."""
    from .retention import delete_session
    counts = delete_session(ctx_of(request), sid, cid)
    return ok({"session_id": sid, "deleted": counts})


class Replay(BaseModel):
    msg_ids: Optional[list[Annotated[str, Field(max_length=64)]]] = Field(None, max_length=10000)


@router.get("/webhooks/dead-letters", tags=["webhooks"])
def dead_letters(request: Request, limit: int = Query(1000, ge=1, le=10000), _: Principal = Depends(admin)):
    """Webhooks not delivered within their retry window (VDBNB_WEBHOOK_RETRY_S), kept until replayed."""
    rows = ctx_of(request).outbox.dead_letters(limit)
    for r in rows:
        r["body"] = dec(r["body"], r["body"])
    return ok({"dead_letters": rows, "count": len(rows)})


@router.post("/webhooks/dead-letters/replay", tags=["webhooks"])
def replay_dead_letters(request: Request, body: Replay | None = None, _: Principal = Depends(admin)):
    """Queue dead letters again (all of them, or ``msg_ids``), in their original order per session."""
    n = ctx_of(request).outbox.replay(body.msg_ids if body else None)
    return ok({"replayed": n})
