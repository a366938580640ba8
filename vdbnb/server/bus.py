"""One path for every result: store the event row, queue its webhook (same transaction), tell every process's
websockets (the notifier), then run this process's listeners (search indexing)."""
from __future__ import annotations

from ..events import Event
from .notify import Notifier
from .store import Store
from .webhooks import Outbox


class EventBus:
    def __init__(self, store: Store, notifier: Notifier, outbox: Outbox):
        self.store = store
        self.notifier = notifier
        self.outbox = outbox
        self.listeners: list = []  # callables(event) run in the emitting thread (pipelines, alerts)

    def emit(self, ev: Event, target_ws: str | None = None, webhook_url: str | None = None,
             webhook_body: dict | None = None) -> Event:
        """Store ``ev`` once: an id already stored (a retried step emits the same deterministic id) is not
        stored, queued or pushed a second time."""
        ev.stamp_emitted()
        row = ev.row()
        row["target_ws"] = target_ws
        with self.store.transaction():
            # a stream deleted meanwhile (its session was deleted while a pipeline still worked on it): the
            # result is dropped, not stored under an id nothing points at any more
            if ev.rtstream_id and not self.store.one("SELECT 1 AS x FROM rtstreams WHERE id=?", (ev.rtstream_id,)):
                return ev
            if not self.store.insert("events", row, ignore=True):
                return ev
            if webhook_url:
                self.outbox.enqueue(webhook_url, webhook_body or ev.to_ws(), ev.session_id, key=ev.id)
            self.notifier.event(ev, target_ws)
        for fn in list(self.listeners):
            fn(ev)
        return ev

    def history(self, collection_id: str, session_id: str | None = None, rtstream_id: str | None = None,
                channel: str | None = None, since: float | None = None, limit: int = 1000) -> list[Event]:
        q = "SELECT * FROM events WHERE collection_id=?"
        p: list = [collection_id]
        for col, val in (("session_id", session_id), ("rtstream_id", rtstream_id), ("channel", channel)):
            if val:
                q += f" AND {col}=?"
                p.append(val)
        if since is not None:
            q += " AND emitted_at > ?"
            p.append(since)
        q += f" ORDER BY emitted_at, {self.store.rowid} LIMIT ?"
        p.append(limit)
        return [Event.from_row(r) for r in self.store.all(q, p)]
