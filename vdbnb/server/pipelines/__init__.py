"""AI pipelines on RTStreams, off the request path: transcripts, audio/visual indexes, alerts, search docs.

Each pipeline keeps a cursor per stream (the last fragment seq it processed, persisted), so the same code
serves live capture, catch-up after a late start, and re-indexing of stored media.
"""
from __future__ import annotations

import logging
import time

from ...events import AUDIO_INDEX, KERNEL, PIPELINE, TRANSCRIPT, VISUAL_INDEX, Event
from ..store import now
from .alerts import AlertEngine
from .audio import AudioWorker
from .indexer import Indexer
from .leases import Leases
from .visual import VisualWorker

log = logging.getLogger("vdbnb.server.pipelines")


class Pipelines:
    def __init__(self, ctx):
        self.ctx = ctx
        self.leases = Leases(ctx.store, ctx.process_id, ctx.settings.lease_s)
        self.redactor = ctx.redactor  # the one redaction step (vdbnb.redaction), keyed by this install
        self.indexer = Indexer(self)
        self.alerts = AlertEngine(self)
        self.workers = [AudioWorker(self), VisualWorker(self)]
        self._behind_said: dict[tuple[str, str], float] = {}
        # new media or changed work, from any process sharing the store (this one included)
        ctx.notifier.on("fragment", lambda _: self.poke())
        ctx.notifier.on("work", lambda _: self.poke())
        ctx.bus.listeners.append(self._on_event)

    # ---- lifecycle
    def start(self) -> None:
        """Run the workers here (role ``all`` or ``worker``; an ``api`` replica only uses the helpers)."""
        self.running = True
        self.leases.start()
        for w in self.workers:
            w.start()

    def stop(self) -> None:
        if not getattr(self, "running", False):
            return
        for w in self.workers:
            w.stop()
        self.leases.stop()

    def poke(self) -> None:
        for w in self.workers:
            w.wake.set()

    # ---- shared helpers
    def cursor(self, rtstream_id: str, pipeline: str) -> int:
        r = self.ctx.store.one("SELECT seq FROM pipeline_cursors WHERE rtstream_id=? AND pipeline=?",
                               (rtstream_id, pipeline))
        return r["seq"] if r else -1

    def set_cursor(self, rtstream_id: str, pipeline: str, seq: int) -> None:
        self.ctx.store.upsert("pipeline_cursors", {"rtstream_id": rtstream_id, "pipeline": pipeline, "seq": seq,
                                                   "updated_at": now()}, key=("rtstream_id", "pipeline"))

    def index_start_seq(self, rts: dict) -> int:
        """Where a new visual index begins: on a live display at the newest fragment (one GOP back), not at
        the start of the recording; on a stopped session at the beginning (re-indexing stored media)."""
        return max(-1, rts["last_seq"] - 1) if self.session_live(rts) else -1

    def session_live(self, rts: dict) -> bool:
        """Whether the stream's capture session is still recording (starting or active)."""
        r = self.ctx.store.one("SELECT status FROM sessions WHERE id=?", (rts["session_id"],))
        return bool(r) and r["status"] in ("starting", "active")

    def reindex_audio(self, idx: dict, rts: dict) -> None:
        """A new audio index on a stream whose capture has ended is fed the stored final transcripts."""
        import threading

        def run():
            rows = self.ctx.store.all("SELECT * FROM events WHERE rtstream_id=? AND channel='transcript' AND "
                                      "is_final=1 ORDER BY start", (rts["id"],))
            for r in rows:
                self.indexer.add_to_index(idx, Event.from_row(r), rts)
            self.indexer.flush_index(idx, rts)
        threading.Thread(target=run, name="vdbnb-reindex", daemon=True).start()

    def emit(self, ev: Event, target_ws: str | None = None, findings: list | None = None,
             webhook_url: str | None = None, webhook_body: dict | None = None) -> Event | None:
        """Store and push a result. Its text was redacted where it was made (the workers call the redactor
        before any engine); here the backstop check runs once more (a secret still there is redacted and
        alerted), then the index's user alerts. A result the check fails on is dropped (fail closed), never
        stored unchecked."""
        try:
            found = self.alerts.backstop(ev, target_ws)
        except Exception:
            log.exception("redaction check failed for %s: the result is dropped", ev.id)
            return None
        if ev.channel in (TRANSCRIPT, AUDIO_INDEX, VISUAL_INDEX, KERNEL) and (ev.channel != TRANSCRIPT or ev.is_final):
            try:
                self.alerts.user_alerts(ev, list(findings or []) + found)
            except Exception:
                log.exception("user alerts failed for %s", ev.id)
        return self.ctx.bus.emit(ev, target_ws=target_ws, webhook_url=webhook_url, webhook_body=webhook_body)

    def forget(self, ids: set[str]) -> None:
        """Drop what the workers hold in memory (last frames, OCR lines, batches of text) for these rtstream and
        index ids: their session was deleted."""
        for part in (*self.workers, self.indexer):
            for v in list(vars(part).values()):
                if isinstance(v, dict):
                    for k in [k for k in v if k in ids]:
                        v.pop(k, None)

    def _on_event(self, ev: Event) -> None:
        """Every stored result becomes searchable, and is checked by the alert engine."""
        try:
            self.indexer.on_event(ev)
        except Exception:
            log.exception("search indexing failed for %s", ev.id)

    def behind(self, worker: str, rts: dict, lag: float, pending: int) -> None:
        """Say so (an event and /health) when a pipeline falls behind, instead of dropping silently."""
        key = (worker, rts["id"])
        if lag > self.ctx.settings.pipeline_behind_s and time.time() - self._behind_said.get(key, 0) > 30:
            self._behind_said[key] = time.time()
            self.emit(Event(channel=PIPELINE, event="pipeline.behind", session_id=rts["session_id"],
                            collection_id=rts["collection_id"], rtstream_id=rts["id"], rtstream_name=rts["name"],
                            channel_id=rts["channel_id"], engine=worker,
                            text=f"{worker} is {lag:.0f}s behind live ({pending} fragments queued); results will "
                                 "arrive late but none are dropped",
                            data={"lag_s": round(lag, 2), "queue_depth": pending}, captured_at=now()))

    def health(self) -> dict:
        return {w.name: w.health() for w in self.workers}
