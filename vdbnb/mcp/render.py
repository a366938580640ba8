"""Results as items an agent can use: one dict per moment (time, kind, source, text), and their text form."""
from __future__ import annotations

from .privacy import is_private
from .timeparse import clock, iso

# channels that are not context: vdbnb's own health notices, and agents' own tool calls
NOT_CONTEXT = ("pipeline", "agent")
SCREEN_KINDS = ("visual_index", "scene_index")
SCREEN_TEXT_MAX = 1200
LINE_MAX = 300  # characters of one item in the text form (the structured form has all of it)
QUIET_STATES = ("created", "starting", "stopping")  # capture lifecycle steps that say nothing new


def event_time(ev: dict) -> float:
    """When the moment happened: media time if the event has one, else when it was captured or emitted."""
    for k in ("start", "captured_at", "emitted_at"):
        if ev.get(k) is not None:
            return float(ev[k])
    return 0.0


def context_item(ev: dict) -> dict | None:
    """One event as a context item, or None when it is not context (interim transcripts, health notices,
    agents' own calls, private items). Unknown channels (e.g. the kernel's ``cell`` events) are kept as they
    come: their text, their kind."""
    ch = ev.get("channel") or "unknown"
    data = ev.get("data") or {}
    if ch in NOT_CONTEXT or is_private(ev):
        return None
    if ch == "transcript" and not ev.get("is_final"):
        return None
    text = (ev.get("text") or "").strip()
    if ch == "capture_session":
        if (data.get("status") or "") in QUIET_STATES:
            return None
        status = (data.get("status") or (ev.get("event") or "").rsplit(".", 1)[-1] or "").strip()
        text = f"capture {status}" + (f" ({data['data']['reason']})" if (data.get("data") or {}).get("reason")
                                      else "")
    # a channel that carries several types of event names the type (the kernel channel's ``cell``)
    kind = ev["event"] if ev.get("event") and "." not in ev["event"] else ch
    item = {"time": iso(event_time(ev)), "t": round(event_time(ev), 3), "kind": kind, "event": ev.get("event"),
            "source": ev.get("channel_id") or data.get("source"), "text": text,
            "session_id": ev.get("session_id"), "rtstream_id": ev.get("rtstream_id")}
    if ch in SCREEN_KINDS:
        item["window_title"] = data.get("window_title")
        item["app"] = data.get("app")
        shown = (data.get("ocr_text") or "").strip()
        item["screen_text"] = shown[:SCREEN_TEXT_MAX] + ("…" if len(shown) > SCREEN_TEXT_MAX else "")
    if ch == "alert":
        item["label"] = ev.get("label")
    if not text and not item.get("screen_text"):
        return None
    return item


def item_line(it: dict) -> str:
    """``[10:01:02] said (mic): …`` — one line per moment, local clock time."""
    kind, src = it["kind"], it.get("source")
    when = f"[{clock(it['t'])}]"
    if kind == "transcript":
        return f"{when} said ({src or 'audio'}): {it['text']}"
    if kind in SCREEN_KINDS:
        title = f" window {it['window_title']!r}" if it.get("window_title") else ""
        body = one_line(it.get("screen_text") or it["text"], SCREEN_TEXT_MAX)
        return f"{when} on screen ({src or 'screen'}){title}: {body}"
    if kind == "alert":
        return f"{when} alert {it.get('label') or ''}: {it['text']}"
    if kind == "capture_session":
        return f"{when} {it['text']}"
    return f"{when} {kind}{f' ({src})' if src else ''}: {one_line(it['text'])}"


def one_line(text: str, most: int = LINE_MAX) -> str:
    """Multi-line text (a cell's source) on one line: its lines joined by " | ", cut at ``most`` characters."""
    s = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return s if len(s) <= most else s[:most - 1] + "…"


def hit_item(h: dict) -> dict:
    start = h.get("start")
    return {"time": iso(start), "start": start, "end": h.get("end"), "channel": h.get("channel_id"),
            "kind": h.get("kind"), "text": (h.get("text") or "").strip(), "score": h.get("score"),
            "session_id": h.get("session_id"), "rtstream_id": h.get("rtstream_id"), "clip_url": h.get("stream_url")}


def hit_line(i: int, h: dict) -> str:
    return (f"{i}. [{clock(h['start'])}] {h['channel'] or ''}/{h['kind'] or ''} (score {h['score'] or 0:.3f}): "
            f"{h['text']}\n   clip: {h['clip_url']}")


def session_item(s: dict) -> dict:
    streams = s.get("rtstreams") or []
    return {"session_id": s.get("id") or s.get("session_id"), "status": s.get("status"),
            "end_user_id": s.get("end_user_id"), "created_at": iso(s.get("created_at")),
            "started_at": iso(s.get("started_at")), "stopped_at": iso(s.get("stopped_at")),
            "channels": [r.get("source_channel_id") for r in streams],
            "transcribing": [r.get("source_channel_id") for r in streams
                             if r.get("transcript_status") == "running"],
            "error": s.get("error")}


def session_line(s: dict) -> str:
    when = s["started_at"] or s["created_at"] or "?"
    chans = ", ".join(filter(None, s["channels"])) or "no channels yet"
    return f"- {s['session_id']}  {s['status']:<8} since {when}  [{chans}]" + \
        (f"  error: {s['error']}" if s.get("error") else "")
