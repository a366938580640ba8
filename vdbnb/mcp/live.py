"""Resources for following a capture, and their update notifications.

| URI | what |
|---|---|
| ``vdbnb://sessions`` | the capture sessions (JSON), with the URIs of each one's resources |
| ``vdbnb://live/transcript`` | what is being said in the live capture(s): final transcript lines (text) |
| ``vdbnb://live/events`` | the live capture(s)' context items: said, shown, alerts, cells (JSON) |
| ``vdbnb://sessions/{session_id}/transcript`` | one session's final transcript (text) |
| ``vdbnb://sessions/{session_id}/events`` | one session's context items (JSON) |

A :class:`Follower` reads the vdbnb server's websocket and tells subscribed clients which of these changed:
``subscriptions/listen`` streams (protocol 2026-07-28) through the SDK's subscription bus, and
``resources/subscribe`` sessions (protocol 2025) through ``send_resource_updated``.
"""
from __future__ import annotations

import json
import logging

import anyio
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from ..events import Event
from .backend import Backend
from .privacy import clean
from .render import NOT_CONTEXT, context_item, item_line

log = logging.getLogger("vdbnb.mcp")
SESSIONS = "vdbnb://sessions"
LIVE_TRANSCRIPT = "vdbnb://live/transcript"
LIVE_EVENTS = "vdbnb://live/events"
MAX_ITEMS = 500
COALESCE_S = 0.25  # updates within this window are sent once (they are "refetch" cues, not payloads)


def transcript_uri(sid: str) -> str:
    return f"vdbnb://sessions/{sid}/transcript"


def events_uri(sid: str) -> str:
    return f"vdbnb://sessions/{sid}/events"


class Resources:
    def __init__(self, backend: Backend):
        self.b = backend

    def register(self, mcp) -> None:
        mcp.resource(SESSIONS, name="sessions", mime_type="application/json")(self.sessions)
        mcp.resource(LIVE_TRANSCRIPT, name="live transcript", mime_type="text/plain")(self.live_transcript)
        mcp.resource(LIVE_EVENTS, name="live events", mime_type="application/json")(self.live_events)
        mcp.resource("vdbnb://sessions/{session_id}/transcript", name="session transcript",
                     mime_type="text/plain")(self.session_transcript)
        mcp.resource("vdbnb://sessions/{session_id}/events", name="session events",
                     mime_type="application/json")(self.session_events)

    # ---- readers (blocking calls run in a thread)
    async def sessions(self) -> str:
        """The capture sessions, newest first, with the URIs of their transcript and events resources."""
        from .render import session_item
        rows = await anyio.to_thread.run_sync(lambda: self.b.sessions(limit=100))
        out = [dict(session_item(s), transcript=transcript_uri(s["id"]), events=events_uri(s["id"])) for s in rows]
        return json.dumps(clean(out), indent=1)

    async def live_transcript(self) -> str:
        """What is being said in the live capture(s): final transcript lines, oldest first."""
        live = await anyio.to_thread.run_sync(self.b.live_sessions)
        if not live:
            return "(no live capture)"
        parts = [await self._transcript(s["id"]) for s in live]
        return "\n".join(parts)

    async def live_events(self) -> str:
        """Context items (said, shown, alerts, cells) of the live capture(s), oldest first."""
        live = await anyio.to_thread.run_sync(self.b.live_sessions)
        items = []
        for s in live:
            items += await self._items(s["id"])
        return json.dumps(sorted(items, key=lambda it: it["t"])[-MAX_ITEMS:], indent=1)

    async def session_transcript(self, session_id: str) -> str:
        """A capture session's final transcript, one line per utterance, oldest first."""
        return await self._transcript(session_id)

    async def session_events(self, session_id: str) -> str:
        """A capture session's context items (said, shown, alerts, cells), oldest first (JSON)."""
        return json.dumps((await self._items(session_id))[-MAX_ITEMS:], indent=1)

    async def _transcript(self, sid: str) -> str:
        evs = await anyio.to_thread.run_sync(lambda: self.b.events(session_id=sid, channel="transcript"))
        items = sorted(filter(None, (context_item(e) for e in evs)), key=lambda it: it["t"])
        return clean("\n".join(item_line(it) for it in items[-MAX_ITEMS:]) or f"(nothing said yet in {sid})")

    async def _items(self, sid: str) -> list[dict]:
        evs = await anyio.to_thread.run_sync(lambda: self.b.events(session_id=sid))
        return clean(sorted(filter(None, (context_item(e) for e in evs)), key=lambda it: it["t"]))


def uris_for(ev: Event) -> set[str]:
    """The resources an event changes."""
    if ev.channel in NOT_CONTEXT or not ev.session_id:
        return set()
    if ev.channel == "capture_session":
        return {SESSIONS, LIVE_TRANSCRIPT, LIVE_EVENTS, events_uri(ev.session_id)}
    if ev.channel == "transcript" and not ev.is_final:
        return set()
    out = {events_uri(ev.session_id), LIVE_EVENTS}
    if ev.channel == "transcript":
        out |= {transcript_uri(ev.session_id), LIVE_TRANSCRIPT}
    return out


class Subscribers:
    """Who wants to hear about which URI, on both protocol eras."""

    def __init__(self, bus: InMemorySubscriptionBus):
        self.bus = bus                       # 2026-07-28: subscriptions/listen streams
        self.legacy: dict[str, dict[int, object]] = {}  # 2025: resources/subscribe, uri -> {connection: session}

    def register(self, mcp) -> None:
        low = mcp._lowlevel_server  # the SDK's own legacy handlers slot; MCPServer has no decorator for it
        low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    @staticmethod
    def _key(session) -> int:
        # a ServerSession is made per request; what lasts is its connection, whose standalone channel
        # carries notifications sent outside a request
        return id(getattr(session, "_connection", session))

    async def _subscribe(self, ctx, params: SubscribeRequestParams) -> EmptyResult:
        self.legacy.setdefault(str(params.uri), {})[self._key(ctx.session)] = ctx.session
        return EmptyResult()

    async def _unsubscribe(self, ctx, params: UnsubscribeRequestParams) -> EmptyResult:
        self.legacy.get(str(params.uri), {}).pop(self._key(ctx.session), None)
        return EmptyResult()

    async def updated(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for key, session in list(self.legacy.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a closed connection: forget it
                self.legacy[uri].pop(key, None)


class Follower:
    """Follows the vdbnb server's websocket; tells subscribers which resources changed. Reconnects."""

    def __init__(self, backend: Backend, subscribers: Subscribers):
        self.b = backend
        self.subs = subscribers
        self.connected = anyio.Event()
        self.dirty: set[str] = set()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._flush)
            delay = 0.5
            while True:
                try:
                    await self._follow()
                    delay = 0.5
                except anyio.get_cancelled_exc_class():
                    raise
                except Exception as e:
                    log.warning("vdbnb event websocket: %s; reconnecting in %.1fs", e, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _follow(self) -> None:
        from ..api import WebSocketConnection
        url = await anyio.to_thread.run_sync(self.b.websocket_url)
        ws = WebSocketConnection(url, all_events=True)
        await ws.connect()
        self.connected.set()
        try:
            async for msg in ws.receive():
                if msg.get("channel"):
                    self.dirty |= uris_for(Event.from_ws(msg))
        finally:
            await ws.close()

    async def _flush(self) -> None:
        while True:
            await anyio.sleep(COALESCE_S)
            dirty, self.dirty = self.dirty, set()
            for uri in sorted(dirty):
                await self.subs.updated(uri)
