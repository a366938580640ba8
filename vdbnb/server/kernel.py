"""The kernel channel on the server: cell fragments become ``cell`` events (stored, pushed, searchable).

The notebook kernel sends each cell execution as an ingest fragment of kind ``cell`` (a JSON record, see
``vdbnb/cells.py``) on the channel ``kernel:current`` of its capture session, so a cell gets what media gets:
client-token auth, fsync before the ack, duplicates acked once, the contiguous high-water mark for resends,
the late-stop grace. Once a cell fragment is stored, :meth:`KernelEvents.on_fragment` emits its event through
the same path as every other result: the built-in secret alerts of what the kernel's redactor found (the one
redactor, vdbnb/redaction.py, as for screen and speech), the backstop check (when the AI pipelines run), the event store,
the websocket (channel ``kernel``), the session's webhook when the backend asked for cell events
(``metadata={"webhook_events": ["cell"]}`` on ``create_capture_session``) and the search index.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
from pathlib import Path

from ..cells import CODEC, KIND, CellError, CellRecord
from ..events import CELL, KERNEL, Event
from ..media.fragments import Fragment, FragmentError, unpack
from ..redaction import SecretFinding
from .pipelines.alerts import secret_alerts
from .store import dec, now

log = logging.getLogger("vdbnb.server.kernel")
ENGINE = "vdbnb-kernel"
WEBHOOK_KEY = "webhook_events"   # session metadata: event types the backend wants on its callback_url
EXPORT_NAME = "{channel}.jsonl"   # kernel:current -> kernel-current.jsonl


def check_cell(frag: Fragment) -> CellRecord:
    """Validate a cell fragment (ingest calls this instead of the media checks). Raises FragmentError."""
    if frag.codec != CODEC:
        raise FragmentError("BAD_MEDIA", f"a cell fragment carries codec {CODEC!r}, not {frag.codec!r}")
    if len(frag.packets) != 1:
        raise FragmentError("BAD_MEDIA", "a cell fragment holds exactly one packet (one cell record)")
    try:
        rec = CellRecord.from_payload(frag.payload)
    except CellError as e:
        raise FragmentError("BAD_CELL", str(e)) from None
    if abs(rec.start - frag.t0) > 0.01 or abs(rec.end - frag.t1) > 0.01:
        raise FragmentError("BAD_TIMES", "a cell fragment's t0/t1 must be the record's start/end")
    return rec


def event_id(rtstream_id: str, seq: int) -> str:
    """One event per stored cell fragment, whatever replays it."""
    return f"ev-cell-{rtstream_id}-{seq}"


def make_event(rts: dict, seq: int, rec: CellRecord) -> Event:
    return Event(channel=KERNEL, event=CELL, session_id=rts["session_id"], collection_id=rts["collection_id"],
                 rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id=KERNEL, text=rec.text(),
                 label="private" if rec.private else rec.status, start=rec.start, end=rec.end, engine=ENGINE,
                 captured_at=rec.end, processed_at=now(), data={**rec.event_data(), "seq": seq},
                 id=event_id(rts["id"], seq))


def findings(rec: CellRecord) -> list[SecretFinding]:
    """The record's findings (checked by CellRecord.from_payload) as the redactor's, for the alert step."""
    return [SecretFinding(f["detector"], float(f.get("confidence", 1.0)), f["fingerprint"], f.get("field"),
                          tuple(f["span"]) if f.get("span") else None) for f in rec.findings]


def search_text(ev: Event) -> str:
    """The text a cell event is indexed under: its error, its source, its outputs (nothing for a private one)."""
    d = ev.data or {}
    if d.get("private"):
        return ""
    parts = [d.get("error") or "", ev.text or ""] + [o.get("text") or "" for o in d.get("outputs") or []]
    return "\n".join(p for p in parts if p.strip())


class KernelEvents:
    """Cell fragments -> cell events, on one thread of its own: the ingest acknowledges a cell once it is on disk,
    without waiting for the redaction step, the search index (an embedding) or the webhook outbox. A session's
    stop (R3) waits for its cells' events (:meth:`wait_idle`), so a stopped session has them all."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._pending: dict[str, int] = {}   # session id -> cells stored and not yet emitted
        self._thread: threading.Thread | None = None

    # ---- live: called by Ingest after a fragment is stored (in the ingest thread)
    def on_fragment(self, rts: dict, frag: Fragment) -> None:
        if frag.kind != KIND:
            return
        with self._cond:
            self._pending[rts["session_id"]] = self._pending.get(rts["session_id"], 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vdbnb-kernel-events", daemon=True)
                self._thread.start()
        self._q.put((rts, frag.seq, frag.payload))

    def _run(self) -> None:
        while True:
            rts, seq, payload = self._q.get()
            try:
                self.emit(rts, seq, CellRecord.from_payload(payload))
            except Exception:   # stored already: recover() replays it at the next start
                log.exception("cell %s#%s: event not emitted", rts.get("id"), seq)
            finally:
                with self._cond:
                    sid = rts["session_id"]
                    self._pending[sid] = self._pending.get(sid, 1) - 1
                    if self._pending[sid] <= 0:
                        self._pending.pop(sid, None)
                    self._cond.notify_all()

    def wait_idle(self, session_id: str, timeout: float = 8.0) -> bool:
        """Wait until every stored cell of the session has its event (bounded: below the recorder's 10 s timeout
        of the stop call; cells still queued after that get their events a moment later)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending.get(session_id), timeout)

    def emit(self, rts: dict, seq: int, rec: CellRecord) -> Event:
        ev = make_event(rts, seq, rec)
        sess = self.ctx.store.one("SELECT callback_url, ws_connection_id, metadata FROM sessions WHERE id=?",
                                  (rts["session_id"],)) or {}
        wanted = (dec(sess.get("metadata"), {}) or {}).get(WEBHOOK_KEY) or []
        hook = sess.get("callback_url") if isinstance(wanted, list) and CELL in wanted else None
        # what the kernel's redactor found: the built-in alert (kind, place, time, fingerprint) before the cell
        secret_alerts(self.ctx.bus, ev, findings(rec), sess.get("ws_connection_id"))
        pipes = self.ctx.pipelines
        if pipes is not None:   # the redaction/alert step, then store + push (+ search, via the bus listeners)
            return pipes.emit(ev, target_ws=sess.get("ws_connection_id"), webhook_url=hook)
        return self.ctx.bus.emit(ev, target_ws=sess.get("ws_connection_id"), webhook_url=hook)

    # ---- after a crash between the fragment's fsync and its event
    def recover(self) -> int:
        """Emit the events of stored cell fragments that have none (the server died in between)."""
        rows = self.ctx.store.all(
            "SELECT f.seq, f.path, r.* FROM fragments f JOIN rtstreams r ON r.id=f.rtstream_id "
            "WHERE r.channel_id=? AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id='ev-cell-'||r.id||'-'||f.seq) "
            "ORDER BY r.id, f.seq", (KERNEL,))
        n = 0
        for r in rows:
            try:
                frag = unpack(self.ctx.ingest.fragment_bytes(r["path"]))
                self.emit(r, r["seq"], CellRecord.from_payload(frag.payload))
                n += 1
            except Exception:
                log.exception("could not replay cell %s#%s", r["id"], r["seq"])
        if n:
            log.info("replayed %d cell event(s) stored before a restart", n)
        return n


def export_cells(ctx, session: dict, out_dir: Path) -> int:
    """Write each kernel stream's cell events as JSON lines (one event row per line) beside the media.
    Returns how many cells were written."""
    n = 0
    for rts in ctx.sessions.rtstreams(session["id"]):
        if rts["channel_id"] != KERNEL:
            continue
        rows = ctx.store.all("SELECT * FROM events WHERE rtstream_id=? AND channel=? ORDER BY start, id",
                             (rts["id"], KERNEL))
        path = out_dir / EXPORT_NAME.format(channel=rts["source_channel_id"].replace(":", "-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(Event.from_row(r).row(), ensure_ascii=False) + "\n")
        tmp.replace(path)
        n += len(rows)
    return n
