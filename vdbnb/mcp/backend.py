"""The vdbnb calls the MCP tools need, through vdbnb's own client (blocking; the tools run them in a thread)."""
from __future__ import annotations

import re

from ..api import Connection, connect
from ..errors import InvalidRequestError

LIVE = ("starting", "active")
# search `kind`s (what a segment is); anything else given as `channel` is an RTStream category
# (mic, screen, system_audio, or a channel another part of vdbnb adds, e.g. the kernel's)
SEARCH_KINDS = ("transcript", "audio_index", "visual_index", "ocr", "cell")
PAGE = 5000          # events per request (the server's most is 10 000)
MAX_EVENTS = 50000   # events kept for one answer (the newest)


class Backend:
    def __init__(self, conn: Connection, collection_id: str = "default"):
        self.conn = conn
        self.collection_id = collection_id

    @classmethod
    def connect(cls, url: str | None = None, api_key: str | None = None, data_dir: str | None = None) -> "Backend":
        """The configured vdbnb server: ``url``/``VDBNB_URL`` (with ``api_key``/``VDBNB_API_KEY``, which may be
        a read-only agent token ``at-…``), else the embedded server of the data dir (started if needed)."""
        return cls(connect(api_key=api_key, base_url=url, data_dir=data_dir))

    @property
    def base_url(self) -> str:
        return self.conn.base_url

    # ---- identity
    def whoami(self, credential: str | None = None) -> dict:
        """What ``credential`` is (default: this connection's own)."""
        if credential is None:
            return self.conn.whoami()
        c = Connection(credential, self.conn.base_url)
        try:
            return c.whoami()
        finally:
            c.close()

    # ---- reads
    def search(self, query: str, start: float | None = None, end: float | None = None, channel: str | None = None,
               limit: int = 10, session_id: str | None = None) -> list[dict]:
        f: dict = {}
        if start is not None:
            f["start"] = start
        if end is not None:
            f["end"] = end
        if session_id:
            f["session_id"] = session_id
        if channel:
            ch = channel.strip().lower()
            f["kind" if ch in SEARCH_KINDS else "channel_id"] = ch
        body = {"query": query, "result_threshold": limit, "filter": f or None}
        d = self.conn.post(f"rtstream/collection/{self.collection_id}/search",
                           {k: v for k, v in body.items() if v is not None})
        return d.get("results", [])

    def events(self, since: float | None = None, session_id: str | None = None, channel: str | None = None,
               most: int = MAX_EVENTS, page: int = PAGE) -> list[dict]:
        """Stored events (rows of the one event schema) emitted after ``since``, oldest first. The server pages
        from the oldest, so this follows ``emitted_at`` page by page to the newest; past ``most`` rows the
        oldest are dropped (an agent wants what is recent)."""
        out: list[dict] = []
        while True:
            d = self.conn.get(f"collection/{self.collection_id}/events", since=since, session_id=session_id,
                              channel=channel, limit=page)
            rows = d.get("events", [])
            out += rows
            if len(out) > most:
                del out[:len(out) - most]
            if len(rows) < page or rows[-1].get("emitted_at") is None or rows[-1]["emitted_at"] == since:
                return out
            since = rows[-1]["emitted_at"]

    def sessions(self, status: str | None = None, limit: int = 50) -> list[dict]:
        d = self.conn.get(f"collection/{self.collection_id}/capture/session", status=status, limit=limit)
        return d.get("sessions", [])

    def session(self, session_id: str) -> dict:
        return self.conn.get(f"collection/{self.collection_id}/capture/session/{session_id}")

    def live_sessions(self) -> list[dict]:
        return [s for s in self.sessions(limit=100) if s.get("status") in LIVE]

    def screen_stream(self, display: str | None = None) -> dict:
        """The screen RTStream of ``display`` ("1", "display:2", an rtstream id; default the primary display)
        in the newest live session, else in the newest session that recorded a screen."""
        sessions = self.sessions(limit=100)
        ordered = [s for s in sessions if s.get("status") in LIVE] + \
            [s for s in sessions if s.get("status") not in LIVE]
        want = (display or "").strip().lower()
        seen: list[str] = []
        for s in ordered:
            screens = [r for r in s.get("rtstreams") or [] if r.get("channel_id") == "screen" and r.get("last_seq")
                       is not None]
            seen += [r.get("source_channel_id") for r in screens]
            if not want:
                pick = next((r for r in screens if r.get("is_primary")), screens[0] if screens else None)
            else:
                pick = next((r for r in screens if _display_matches(r, want)), None)
            if pick:
                return dict(pick, session_status=s.get("status"))
        if not seen:
            raise InvalidRequestError("no display has been recorded yet: start a capture with a display "
                                      "(or call start_capture, when it is allowed)")
        raise InvalidRequestError(f"no recorded display matches {display!r}; recorded displays: "
                                  f"{', '.join(sorted(set(filter(None, seen))))}")

    def frame(self, rtstream_id: str, max_width: int | None = None, fmt: str = "png") -> dict:
        return self.conn.get(f"rtstream/{rtstream_id}/frame", format=fmt, max_width=max_width)

    # ---- writes
    def log_tool_call(self, **kw) -> str:
        return self.conn.log_tool_call(collection_id=self.collection_id, **kw)

    def websocket_url(self) -> str:
        return self.conn.get(f"collection/{self.collection_id}/websocket")["websocket_url"]

    def close(self) -> None:
        self.conn.close()


def _display_matches(rts: dict, want: str) -> bool:
    src = (rts.get("source_channel_id") or "").lower()
    if want in (src, (rts.get("id") or "").lower()):
        return True
    m = re.fullmatch(r"(?:display|screen)?\s*[:#]?\s*(\d+)", want)
    return bool(m) and src.rsplit(":", 1)[-1] == m.group(1)

