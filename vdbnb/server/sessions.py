"""Capture sessions and their RTStreams: state machine, serialisation, lifecycle events."""
from __future__ import annotations

import re

from ..events import CAPTURE_SESSION, KERNEL, Event, category_of, new_id
from .bus import EventBus
from .errors import bad_request, conflict, not_found
from .store import Store, dec, now

CREATED, STARTING, ACTIVE, STOPPING, STOPPED, EXPORTED, FAILED = (
    "created", "starting", "active", "stopping", "stopped", "exported", "failed")
TRANSITIONS = {
    CREATED: {STARTING, FAILED, STOPPED},
    STARTING: {ACTIVE, STOPPING, STOPPED, FAILED},
    ACTIVE: {STOPPING, STOPPED, FAILED},
    STOPPING: {STOPPED, FAILED},
    STOPPED: {EXPORTED, FAILED, ACTIVE},  # -> active only when a lost recorder comes back (resume_if_lost)
    EXPORTED: {EXPORTED},
    FAILED: set(),
}
LOST = "recorder_lost"
CHANNEL_TYPES = ("audio", "video", KERNEL)   # kernel: cell executions of the notebook kernel (server/kernel.py)
MEDIA_TYPES = {"video": "video", "audio": "audio", KERNEL: "cell"}
CHANNEL_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+:[A-Za-z0-9_.:\-]+$")


class Sessions:
    def __init__(self, store: Store, bus: EventBus):
        self.store = store
        self.bus = bus

    # ------------------------------------------------------------------ reads
    def row(self, session_id: str, collection_id: str | None = None) -> dict:
        r = self.store.one("SELECT * FROM sessions WHERE id=?", (session_id,))
        if not r or (collection_id and r["collection_id"] != collection_id):
            raise not_found("capture session", session_id)
        return r

    def rtstreams(self, session_id: str) -> list[dict]:
        return self.store.all("SELECT * FROM rtstreams WHERE session_id=? ORDER BY created_at, id", (session_id,))

    def to_dict(self, r: dict, with_streams: bool = True) -> dict:
        d = {
            "id": r["id"], "session_id": r["id"], "collection_id": r["collection_id"],
            "end_user_id": r["end_user_id"], "client_id": r["client_id"], "status": r["status"],
            "callback_url": r["callback_url"], "ws_connection_id": r["ws_connection_id"],
            "metadata": dec(r["metadata"], {}), "channels": dec(r["channels"], []),
            "primary_video_channel_id": r["primary_video_channel_id"],
            "exported_video_id": r["exported_video_id"], "export_status": r["export_status"],
            "created_at": r["created_at"], "updated_at": r["updated_at"], "started_at": r["started_at"],
            "stopped_at": r["stopped_at"], "error": r["error"],
        }
        if with_streams:
            d["rtstreams"] = [rtstream_dict(s) for s in self.rtstreams(r["id"])]
        return d

    def list(self, collection_id: str, status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        q, p = "SELECT * FROM sessions WHERE collection_id=?", [collection_id]
        if status:
            q += " AND status=?"
            p.append(status)
        q += " ORDER BY created_at DESC LIMIT ? OFFSET ?"
        p += [limit, offset]
        return [self.to_dict(r) for r in self.store.all(q, p)]

    # ------------------------------------------------------------------ writes
    def create(self, collection_id: str, end_user_id: str, callback_url: str | None = None,
               ws_connection_id: str | None = None, metadata: dict | None = None) -> dict:
        sid = new_id("cap")
        t = now()
        self.store.insert("sessions", {"id": sid, "collection_id": collection_id, "end_user_id": end_user_id,
                                       "client_id": end_user_id, "status": CREATED, "callback_url": callback_url,
                                       "ws_connection_id": ws_connection_id, "metadata": metadata or {},
                                       "channels": [], "created_at": t, "updated_at": t})
        self._lifecycle(self.row(sid), CREATED)
        d = self.to_dict(self.row(sid))
        d.pop("id")  # the official SDK pops session_id and would get `id` twice
        return d

    def transition(self, session_id: str, new: str, data: dict | None = None, error: str | None = None) -> dict:
        r = self.row(session_id)
        old = r["status"]
        if new == old and new != EXPORTED:
            return r
        if old == STOPPED and new == ACTIVE and not (r["error"] or "").startswith(LOST):
            raise conflict(f"capture session {session_id} was stopped; create a new session to record again.")
        if new not in TRANSITIONS.get(old, set()):
            raise conflict(f"capture session {session_id} is {old!r}; it cannot become {new!r}.")
        fields = {"status": new, "updated_at": now()}
        if new == STARTING:
            fields["started_at"] = now()
        if new in (STOPPED, FAILED) and not r["stopped_at"]:
            fields["stopped_at"] = now()
        if error:
            fields["error"] = error
        # compare-and-set on the status: of two threads or replicas making the same move, one emits its event
        sets = ",".join(f'"{c}"=?' for c in fields)
        with self.store.transaction():
            moved = self.store.execute(f"UPDATE sessions SET {sets} WHERE id=? AND status=?",
                                       [*fields.values(), session_id, old]).rowcount
            if moved and new in (STOPPED, FAILED):
                self.store.execute("UPDATE rtstreams SET status='stopped' WHERE session_id=?", (session_id,))
            r = self.row(session_id)
            if moved:  # the event (and its webhook) commit with the change they report
                self._lifecycle(r, new, data)
        if not moved:
            if r["status"] == new:
                return r  # someone else made this move
            raise conflict(f"capture session {session_id} changed to {r['status']!r} meanwhile; it cannot become "
                           f"{new!r}.")
        return r

    def resume_if_lost(self, session_id: str) -> bool:
        """A recorder that the server gave up on (no link for the grace period) is back: the session was
        stopped by the server, not by the user, so it becomes active again and nothing is refused."""
        r = self.row(session_id)
        if r["status"] != STOPPED or not (r["error"] or "").startswith(LOST):
            return False
        try:
            self.transition(session_id, ACTIVE, data={"resumed": True, "after": "recorder_lost"})
        except Exception:  # a concurrent resume already did it
            return self.row(session_id)["status"] == ACTIVE
        self.store.update("sessions", "id", session_id, error=None, stopped_at=None)
        self.store.execute("UPDATE rtstreams SET status='connected' WHERE session_id=?", (session_id,))
        return True

    def start(self, session_id: str, collection_id: str, channels: list[dict], primary: str | None = None,
              callback_url: str | None = None, ws_connection_id: str | None = None) -> dict:
        """R1: the recorder starts a session with its client token; one RTStream per channel."""
        r = self.row(session_id, collection_id)
        if not isinstance(channels, list) or not channels:
            raise bad_request("channels must be a non-empty list of {channel_id, type, name, store, is_primary}",
                              "MISSING_CHANNELS")
        norm = []
        seen = set()
        for ch in channels:
            if not isinstance(ch, dict):
                raise bad_request("each channel must be an object", "INVALID_CHANNELS")
            cid = str(ch.get("channel_id") or ch.get("id") or "")
            if not CHANNEL_ID_RE.match(cid) or cid in seen:
                raise bad_request(f"invalid or duplicate channel_id {cid!r}: expected e.g. 'mic:default', "
                                  "'display:1', 'system_audio:default'", "INVALID_CHANNELS")
            seen.add(cid)
            kind = ch.get("type") or {"screen": "video", KERNEL: KERNEL}.get(category_of(cid), "audio")
            if kind not in CHANNEL_TYPES:
                raise bad_request(f"channel {cid}: type must be 'audio', 'video' or 'kernel'", "INVALID_CHANNELS")
            if (kind == KERNEL) != (category_of(cid) == KERNEL):
                raise bad_request(f"channel {cid}: a kernel channel is named 'kernel:<name>' and has type 'kernel'",
                                  "INVALID_CHANNELS")
            norm.append({"channel_id": cid, "type": kind,
                         "name": str(ch.get("name") or ch.get("channel_name") or cid),
                         "store": bool(ch.get("store", False)),
                         "is_primary": kind != KERNEL and (bool(ch.get("is_primary", False)) or primary == cid)})
        if not any(c["is_primary"] for c in norm):
            for c in norm:
                if c["type"] == "video":
                    c["is_primary"] = True
                    break
        status = r["status"]
        if status == STOPPED and (r["error"] or "").startswith(LOST) and \
                sorted(c["channel_id"] for c in dec(r["channels"], [])) == sorted(seen):
            self.resume_if_lost(session_id)
            return self.row(session_id)
        if status in (STARTING, ACTIVE):
            if sorted(c["channel_id"] for c in dec(r["channels"], [])) == sorted(seen):
                return r  # a restarted recorder resumes the same session
            raise conflict(f"capture session {session_id} is already {status} with other channels; stop it "
                           "first or create a new session.", "SessionAlreadyExists")
        if status != CREATED:
            raise conflict(f"capture session {session_id} is {status!r}; create a new session to record again.",
                           "SessionAlreadyExists")
        t = now()
        with self.store.transaction():
            for c in norm:
                rid = new_id("rts")
                cat = category_of(c["channel_id"], c["type"])
                self.store.insert("rtstreams", {
                    "id": rid, "session_id": session_id, "collection_id": r["collection_id"], "channel_id": cat,
                    "source_channel_id": c["channel_id"], "name": f"{c['channel_id']} - {session_id}",
                    "media_types": [MEDIA_TYPES.get(c["type"], "audio")],
                    "is_primary": c["is_primary"], "store": c["store"], "status": "connected",
                    "sample_rate": 48000 if c["type"] == "audio" else None, "created_at": t})
            primary_id = next((c["channel_id"] for c in norm if c["is_primary"]), None)
            upd = {"channels": norm, "primary_video_channel_id": primary_id, "last_media_at": t}
            if callback_url and not r["callback_url"]:
                upd["callback_url"] = callback_url
            if ws_connection_id and not r["ws_connection_id"]:
                upd["ws_connection_id"] = ws_connection_id
            self.store.update("sessions", "id", session_id, **upd)
        return self.transition(session_id, STARTING)

    # ------------------------------------------------------------------ events
    def _lifecycle(self, r: dict, status: str, data: dict | None = None) -> None:
        d = dict(data or {})
        if status == ACTIVE:
            d.setdefault("rtstreams", [{"rtstream_id": s["id"], "name": s["name"], "channel_id": s["channel_id"],
                                        "media_types": dec(s["media_types"], [])}
                                       for s in self.rtstreams(r["id"])])
        if status == FAILED and r.get("error"):
            d.setdefault("error", r["error"])
        if status == STOPPED and r.get("error"):
            d.setdefault("reason", r["error"])
        name = f"capture_session.{status}"
        body = {"event": name, "capture_session_id": r["id"], "status": status, "data": d}
        ev = Event(channel=CAPTURE_SESSION, event=name, session_id=r["id"], collection_id=r["collection_id"],
                   data={"status": status, "data": d}, captured_at=now())
        self.bus.emit(ev, target_ws=r["ws_connection_id"], webhook_url=r["callback_url"], webhook_body=body)


def rtstream_dict(s: dict) -> dict:
    return {
        "id": s["id"], "rtstream_id": s["id"], "name": s["name"], "collection_id": s["collection_id"],
        "session_id": s["session_id"], "channel_id": s["channel_id"], "source_channel_id": s["source_channel_id"],
        "media_types": dec(s["media_types"], []), "is_primary": bool(s["is_primary"]), "store": bool(s["store"]),
        "status": s["status"], "sample_rate": s["sample_rate"], "created_at": s["created_at"],
        "first_t": s["first_t"], "last_t": s["last_t"], "last_seq": s["last_seq"],
        "transcript_status": s["transcript_status"] or "not_configured",
        "exported_video_id": s["exported_video_id"],
    }
