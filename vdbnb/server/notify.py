"""Telling every process that shares the store what happened: one interface, two engines.

- :class:`LocalNotifier` (embedded SQLite: one process): events go straight to this process's websocket hub,
  pokes straight to this process's listeners;
- :class:`PgNotifier` (PostgreSQL): ``pg_notify`` inside the writer's transaction, carrying ids only; every
  process LISTENs, reads the row by id and pushes it to *its own* websockets (or wakes its own workers).

Topics of :meth:`Notifier.poke`: ``fragment`` (a stream has new media: payload rtstream id), ``work`` (an
index, transcript or alert changed), ``outbox`` (a webhook was queued).
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable

from ..events import Event

log = logging.getLogger("vdbnb.server.notify")
EVENTS_CHANNEL = "vdbnb_events"
POKE_CHANNEL = "vdbnb_poke"


class Notifier:
    kind = "?"

    def __init__(self, hub=None):
        self.hub = hub
        self._subs: dict[str, list[Callable[[str], None]]] = defaultdict(list)

    def on(self, topic: str, fn: Callable[[str], None]) -> None:
        """Call ``fn(payload)`` on every poke of ``topic`` from any process (in a notifier thread or the caller's)."""
        self._subs[topic].append(fn)

    def _dispatch(self, topic: str, payload: str) -> None:
        for fn in list(self._subs.get(topic, ())):
            try:
                fn(payload)
            except Exception:
                log.exception("notifier listener for %s failed", topic)

    def event(self, ev: Event, target_ws: str | None) -> None:
        """An event row was written (called inside the writer's transaction): reach every websocket."""
        raise NotImplementedError

    def poke(self, topic: str, payload: str = "") -> None:
        raise NotImplementedError

    def poke_statement(self, topic: str, payload: str = "") -> tuple[str, tuple] | None:
        """The poke as a statement to run in the writer's transaction (delivered when it commits), or None
        when this notifier pokes in process (then call :meth:`poke` after the commit)."""
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class LocalNotifier(Notifier):
    kind = "in-process"

    def event(self, ev: Event, target_ws: str | None) -> None:
        if self.hub is not None:
            self.hub.publish(ev.collection_id, ev.to_ws(), target_ws)

    def poke(self, topic: str, payload: str = "") -> None:
        self._dispatch(topic, payload)


class PgNotifier(Notifier):
    """LISTEN/NOTIFY on the PostgreSQL store: a listening connection per process, in its own thread."""

    kind = "postgresql LISTEN/NOTIFY"

    def __init__(self, store, hub=None):
        super().__init__(hub)
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def event(self, ev: Event, target_ws: str | None) -> None:
        # transactional: delivered when (and only if) the row is committed
        self.store.execute("SELECT pg_notify(?, ?)", (EVENTS_CHANNEL, ev.id))

    def poke(self, topic: str, payload: str = "") -> None:
        self.store.execute(*self.poke_statement(topic, payload))

    def poke_statement(self, topic: str, payload: str = "") -> tuple[str, tuple]:
        return "SELECT pg_notify(?, ?)", (POKE_CHANNEL, f"{topic}:{payload}")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vdbnb-listen", daemon=True)
            self._thread.start()
            self.listening.wait(10)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        import psycopg
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.store.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    conn.execute(f"LISTEN {POKE_CHANNEL}")
                    self.listening.set()
                    # whatever was missed while (re)connecting: wake everything once
                    for topic in list(self._subs):
                        self._dispatch(topic, "")
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            if n.channel == EVENTS_CHANNEL:
                                self._deliver(n.payload)
                            else:
                                topic, _, payload = n.payload.partition(":")
                                self._dispatch(topic, payload)
            except Exception as e:  # the database went away: listen again when it is back
                if not self._stop.is_set():
                    log.warning("notification listener lost its connection (%s); reconnecting", e)
                    self._stop.wait(1.0)

    def _deliver(self, event_id: str) -> None:
        if self.hub is None or not self.hub.subs:
            return
        row = self.store.one("SELECT * FROM events WHERE id=?", (event_id,))
        if row is None:
            return
        target = row.pop("target_ws", None)
        ev = Event.from_row(row)
        self.hub.publish(ev.collection_id, ev.to_ws(), target)


def open_notifier(store, hub) -> Notifier:
    return PgNotifier(store, hub) if store.dialect == "postgresql" else LocalNotifier(hub)
