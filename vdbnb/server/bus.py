"""One path for every result: store the event row, queue webhooks (durable), push to websockets."""
from __future__ import annotations

from ..events import Event
from .hub import Hub
from .store import Store, _enc
from .webhooks import Outbox


class EventBus:
    def __init__(self, store: Store, hub: Hub, outbox: Outbox):
        self.store = store
        self.hub = hub
        self.outbox = outbox
        self.listeners: list = []  # callables(event) run in the emitting thread (pipelines, alerts)

    def emit(self, ev: Event, target_ws: str | None = None, webhook_url: str | None = None,
             webhook_body: dict | None = None) -> Event:
        ev.stamp_emitted()
        row = ev.row()
        row["target_ws"] = target_ws
        with self.store.transaction():
            cols = ",".join(f'"{c}"' for c in row)
            self.store.db.execute(f"INSERT OR REPLACE INTO events ({cols}) VALUES ({','.join('?' * len(row))})",
                                  [_enc(v) for v in row.values()])
            if webhook_url:
                self.outbox.enqueue(webhook_url, webhook_body or ev.to_ws(), ev.session_id)
        self.hub.publish(ev.collection_id, ev.to_ws(), target_ws)
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
        q += " ORDER BY emitted_at, rowid LIMIT ?"
        p.append(limit)
        return [Event.from_row(r) for r in self.store.all(q, p)]
