"""The read tools: search, recent_context, screen_now, list_sessions, session_summary.

Each returns text an agent reads plus structured content (its output schema is the pydantic model named in
its return annotation). Everything passes through :func:`privacy.clean` on its way out.
"""
from __future__ import annotations

import time
from typing import Annotated, Optional

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .audit import Audit
from .backend import Backend
from .privacy import clean, is_private
from .render import context_item, hit_item, hit_line, item_line, session_item, session_line
from .timeparse import FORMS, clock, iso, parse_time, zone

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MAX_MINUTES = 24 * 60
MAX_ITEMS = 400  # items in one recent_context answer (the newest)


# ---------------------------------------------------------------- output schemas
class Hit(BaseModel):
    time: Optional[str] = Field(None, description="UTC ISO 8601 time of the moment")
    start: Optional[float] = Field(None, description="epoch seconds")
    end: Optional[float] = None
    channel: Optional[str] = Field(None, description="mic, screen, system_audio, ...")
    kind: Optional[str] = Field(None, description="transcript, visual_index, ocr, audio_index, ...")
    text: str
    score: Optional[float] = None
    session_id: Optional[str] = None
    rtstream_id: Optional[str] = None
    clip_url: Optional[str] = Field(None, description="a playable MP4 of the moment (signed, expires)")


class SearchResult(BaseModel):
    query: str
    hits: list[Hit]


class ContextItem(BaseModel):
    time: Optional[str] = Field(None, description="UTC ISO 8601")
    t: float = Field(description="epoch seconds")
    kind: str = Field(description="transcript, visual_index, alert, capture_session, cell, ...")
    event: Optional[str] = None
    source: Optional[str] = Field(None, description="mic, screen, system_audio, kernel, ...")
    text: str
    window_title: Optional[str] = None
    app: Optional[str] = None
    screen_text: Optional[str] = None
    label: Optional[str] = None
    session_id: Optional[str] = None
    rtstream_id: Optional[str] = None


class RecentContext(BaseModel):
    since: str
    until: str
    items: list[ContextItem]


class ScreenNow(BaseModel):
    time: Optional[str] = None
    display: Optional[str] = None
    window_title: Optional[str] = None
    app: Optional[str] = None
    ocr_text: str
    width: int
    height: int
    mime_type: str
    live: bool = Field(description="whether the display is being recorded right now")
    redacted: list[str] = Field(description="kinds of secrets blacked out in the image and redacted in the text")
    session_id: Optional[str] = None
    rtstream_id: Optional[str] = None


class SessionInfo(BaseModel):
    session_id: Optional[str] = None
    status: Optional[str] = None
    end_user_id: Optional[str] = None
    created_at: Optional[str] = None
    started_at: Optional[str] = None
    stopped_at: Optional[str] = None
    channels: list[Optional[str]] = []
    transcribing: list[Optional[str]] = []
    error: Optional[str] = None


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class SessionSummary(BaseModel):
    session: SessionInfo
    duration_s: Optional[float] = None
    counts: dict[str, int] = Field(description="events by kind")
    transcript: str = Field(description="what was said (final transcript, in order)")
    window_titles: list[str] = Field(description="windows seen, in order of first appearance")
    alerts: list[str]
    other: list[ContextItem] = Field(description="items of other kinds (e.g. kernel cells), in order")


def _result(text: str, structured: BaseModel, extra: list | None = None) -> CallToolResult:
    data = clean(structured.model_dump(mode="json"))
    return CallToolResult(content=[TextContent(type="text", text=clean(text)), *(extra or [])],
                          structured_content=data)


# ---------------------------------------------------------------- the tools
class ReadTools:
    def __init__(self, backend: Backend, audit: Audit):
        self.b = backend
        self.audit = audit

    def register(self, mcp) -> None:
        for fn in (self.search, self.recent_context, self.screen_now, self.list_sessions, self.session_summary):
            mcp.add_tool(fn, annotations=READ)

    async def search(self, query: Annotated[str, Field(description="what to look for: words said or shown, or a "
                                                       "description of it (keyword + semantic search)")],
                     ctx: Context, since: Annotated[Optional[str], Field(description=f"only moments after this: {FORMS}")] = None,
                     until: Annotated[Optional[str], Field(description=f"only moments before this: {FORMS}")] = None,
                     channel: Annotated[Optional[str], Field(description="only this channel (mic, screen, system_audio) "
                                                             "or kind (transcript, visual_index, ocr, cell)")] = None,
                     limit: Annotated[int, Field(ge=1, le=100, description="at most this many hits")] = 10,
                     ) -> Annotated[CallToolResult, SearchResult]:
        """Search everything captured (what was said, what was on screen) by keyword and meaning. Each hit has
        its time, channel, text and a playable clip URL of the moment. Best hits first."""
        def run():
            start, end = parse_time(since), parse_time(until)
            if start is not None and end is not None and end < start:
                raise ValueError(f"until ({until}) is before since ({since})")
            hits = [hit_item(h) for h in self.b.search(query, start, end, channel, limit)]
            hits = [h for h in hits if h["text"]]
            if hits:
                text = f"{len(hits)} moments for {query!r} (times are {zone()}):\n" + \
                    "\n".join(hit_line(i + 1, h) for i, h in enumerate(hits))
            else:
                text = f"nothing captured matches {query!r}" + (" in that time range" if start or end else "") + \
                    ". Is anything being transcribed or indexed? list_sessions shows what was captured."
            return _result(text, SearchResult(query=query, hits=[Hit(**h) for h in hits])), len(hits), None
        return await self.audit.run(ctx, "search", {"query": query, "since": since, "until": until,
                                                    "channel": channel, "limit": limit}, run)

    async def recent_context(self, ctx: Context,
                             minutes: Annotated[float, Field(gt=0, le=MAX_MINUTES, description="how far back")] = 5,
                             session_id: Annotated[Optional[str], Field(description="only this capture session")] = None,
                             ) -> Annotated[CallToolResult, RecentContext]:
        """What happened in the last few minutes, in time order: what was said (final transcript), what was on
        screen (window titles and screen text from the visual index), alerts, capture start/stop, and notebook
        cells when the kernel channel is on."""
        def run():
            until = time.time()
            since = until - minutes * 60
            evs = self.b.events(since=since, session_id=session_id)
            items = sorted(filter(None, (context_item(e) for e in evs)), key=lambda it: it["t"])
            dropped = max(0, len(items) - MAX_ITEMS)
            items = items[dropped:]
            head = f"Last {minutes:g} min ({clock(since)}–{clock(until)} {zone()}), {len(items)} items"
            if not items:
                text = head + ": nothing was captured (no live capture, or nothing said or shown). " \
                    "list_sessions shows what is recording."
            else:
                text = head + (f" (the newest; {dropped} earlier ones left out: ask for fewer minutes, or search)"
                               if dropped else "") + ":\n" + "\n".join(item_line(it) for it in items)
            return (_result(text, RecentContext(since=iso(since), until=iso(until),
                                                items=[ContextItem(**it) for it in items])), len(items), session_id)
        return await self.audit.run(ctx, "recent_context", {"minutes": minutes, "session_id": session_id}, run)

    async def screen_now(self, ctx: Context,
                         display: Annotated[Optional[str], Field(description="which display: 1, 2, display:2 "
                                                                 "(default: the primary one)")] = None,
                         ) -> Annotated[CallToolResult, ScreenNow]:
        """The latest frame of a display as an image, with its OCR text and the active window's title. Secrets on
        screen are blacked out; excluded windows were never recorded."""
        def run():
            rts = self.b.screen_stream(display)
            fr = self.b.frame(rts["id"])
            live = rts.get("session_status") in ("starting", "active")
            age = time.time() - float(fr["time"])
            title = fr.get("window_title")
            text = (f"{fr.get('display')} at {clock(fr['time'])} {zone()} ({age:.0f} s ago"
                    f"{'' if live else ', capture stopped'}{'; capture paused: the frame is black' if fr.get('paused') else ''})"
                    + (f", active window {title!r}" if title else "")
                    + (f"; {len(fr['redacted'])} kinds of secret blacked out" if fr.get("redacted") else "")
                    + ".\nScreen text:\n" + (fr.get("ocr_text") or "(no text)"))
            out = ScreenNow(time=iso(fr["time"]), display=fr.get("display"), window_title=title, app=fr.get("app"),
                            ocr_text=fr.get("ocr_text") or "", width=fr["width"], height=fr["height"],
                            mime_type=fr["mime_type"], live=live, redacted=fr.get("redacted") or [],
                            session_id=fr.get("session_id"), rtstream_id=fr.get("rtstream_id"))
            img = ImageContent(type="image", data=fr["image_b64"], mime_type=fr["mime_type"])
            return _result(text, out, [img]), 1, fr.get("session_id")
        return await self.audit.run(ctx, "screen_now", {"display": display}, run)

    async def list_sessions(self, ctx: Context,
                            status: Annotated[Optional[str], Field(description="only sessions in this state: created, "
                                                                   "starting, active, stopped, exported, failed")] = None,
                            limit: Annotated[int, Field(ge=1, le=200)] = 20) -> Annotated[CallToolResult, SessionList]:
        """The capture sessions, newest first: id, state, when, which channels (displays, microphones, system
        audio) and which are being transcribed."""
        def run():
            rows = [session_item(s) for s in self.b.sessions(status=status, limit=limit)]
            text = (f"{len(rows)} capture sessions (newest first):\n" + "\n".join(session_line(s) for s in rows)
                    if rows else "no capture sessions" + (f" with status {status!r}" if status else ""))
            return _result(text, SessionList(sessions=[SessionInfo(**s) for s in rows])), len(rows), None
        return await self.audit.run(ctx, "list_sessions", {"status": status, "limit": limit}, run)

    async def session_summary(self, session_id: Annotated[str, Field(description="a session id from list_sessions")],
                              ctx: Context) -> Annotated[CallToolResult, SessionSummary]:
        """One capture session in brief: when and how long, what was said (the whole final transcript, in
        order), which windows were on screen, alerts, and counts of everything captured."""
        def run():
            row = self.b.session(session_id)
            s = session_item(row)
            evs = [e for e in self.b.events(session_id=session_id) if not is_private(e)]
            counts: dict[str, int] = {}
            for e in evs:
                if e.get("channel") == "transcript" and not e.get("is_final"):
                    continue
                counts[e.get("channel") or "unknown"] = counts.get(e.get("channel") or "unknown", 0) + 1
            said = sorted((e for e in evs if e.get("channel") == "transcript" and e.get("is_final")),
                          key=lambda e: e.get("start") or 0)
            transcript = " ".join((e.get("text") or "").strip() for e in said).strip()
            titles: list[str] = []
            for e in sorted(evs, key=lambda e: e.get("start") or 0):
                t = (e.get("data") or {}).get("window_title")
                if t and t not in titles:
                    titles.append(t)
            alerts = [f"{e.get('label')}: {e.get('text')}" for e in evs if e.get("channel") == "alert"]
            known = ("transcript", "alert", "capture_session", "visual_index", "scene_index", "audio_index")
            other = sorted(filter(None, (context_item(e) for e in evs if e.get("channel") not in known)),
                           key=lambda it: it["t"])
            t0, t1 = row.get("started_at") or row.get("created_at"), row.get("stopped_at") or time.time()
            dur = round(t1 - t0, 1) if t0 else None
            lines = [f"Session {session_id}: {s['status']}, started {s['started_at'] or s['created_at']}"
                     + (f", {dur / 60:.1f} min" if dur else "") + f", channels {', '.join(filter(None, s['channels']))}",
                     "Counts: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing captured"),
                     "Said: " + (transcript or "(no transcript)"),
                     "Windows: " + ("; ".join(titles) or "(none recorded)")]
            if alerts:
                lines.append("Alerts: " + "; ".join(alerts))
            lines += [item_line(it) for it in other[:50]]
            out = SessionSummary(session=SessionInfo(**s), duration_s=dur, counts=counts, transcript=transcript,
                                 window_titles=titles, alerts=alerts, other=[ContextItem(**it) for it in other])
            return _result("\n".join(lines), out), len(evs), session_id
        return await self.audit.run(ctx, "session_summary", {"session_id": session_id}, run)

