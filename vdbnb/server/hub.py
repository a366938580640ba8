"""Websocket hub: live events to connected clients (best effort; webhooks are the durable path)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

log = logging.getLogger("vdbnb.server.hub")
QUEUE_MAX = 2000


@dataclass
class Subscriber:
    connection_id: str
    collection_id: str
    all_events: bool
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: int = 0


class Hub:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subs: dict[str, Subscriber] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def add(self, sub: Subscriber) -> None:
        self.subs[sub.connection_id] = sub

    def remove(self, connection_id: str) -> None:
        self.subs.pop(connection_id, None)

    def publish(self, collection_id: str | None, message: dict, target: str | None) -> None:
        """Thread-safe: may be called from pipeline threads."""
        if self.loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._deliver(collection_id, message, target)
        else:
            self.loop.call_soon_threadsafe(self._deliver, collection_id, message, target)

    def _deliver(self, collection_id: str | None, message: dict, target: str | None) -> None:
        for sub in list(self.subs.values()):
            if sub.connection_id == target or (sub.all_events and sub.collection_id == collection_id):
                try:
                    sub.queue.put_nowait(message)
                except asyncio.QueueFull:
                    sub.dropped += 1
                    if sub.dropped in (1, 100, 1000):
                        log.warning("websocket %s is not reading; dropped %d events (they stay in the store: "
                                    "GET collection/{id}/events)", sub.connection_id, sub.dropped)
