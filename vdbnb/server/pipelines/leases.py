"""Leases on AI work, per stream and pipeline: of all the workers sharing the store, one processes a stream.

A lease is a row of ``stream_leases`` (holder, expiry). On each pass a worker claims, in one statement, the
streams it has work for whose lease is free or expired (or already its own): the rows are locked with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers claiming at the same moment skip each other's rows instead
of queueing behind them, and the ``UPDATE`` re-checks holder and expiry on the row it locked, so a lease has one
holder. It renews what it holds every ``lease_s / 3`` seconds (``VDBNB_LEASE_S``, one statement for all of
them) from a thread of its own (so a long step such as an accurate pass keeps it), and gives them up on stop. A worker that dies stops renewing: its leases expire
after ``lease_s`` and another worker claims them, resuming from the persisted cursor. Cursors are advanced
only by the holder (:meth:`Leases.advance`), in the same statement that checks the lease.
"""
from __future__ import annotations

import logging
import threading

from ..store import now

log = logging.getLogger("vdbnb.server.pipelines.leases")


class Leases:
    def __init__(self, store, holder: str, lease_s: float = 10.0):
        self.store = store
        self.holder = holder
        self.lease_s = lease_s
        self.held: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="vdbnb-leases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            held, self.held = list(self.held), set()
        for rid, pipe in held:
            self.store.execute("DELETE FROM stream_leases WHERE rtstream_id=? AND pipeline=? AND holder=?",
                               (rid, pipe, self.holder))

    def claim(self, pipeline: str, rtstream_ids: list[str]) -> set[str]:
        """Hold (or keep holding) the ``pipeline`` lease of each stream that no other worker holds; returns the
        streams held now (the others belong to live workers)."""
        if not rtstream_ids:
            return set()
        t = now()
        qs = ",".join("?" for _ in rtstream_ids)
        free = "(holder=? OR expires_at < ?)"
        res = self.store.batch([
            *(("INSERT INTO stream_leases (rtstream_id, pipeline, holder, expires_at, acquired_at) VALUES "
               "(?,?,'',0,?) ON CONFLICT DO NOTHING", (rid, pipeline, t)) for rid in rtstream_ids),
            (f"UPDATE stream_leases SET holder=?, expires_at=?, acquired_at=CASE WHEN holder=? THEN acquired_at "
             f"ELSE ? END WHERE pipeline=? AND rtstream_id IN (SELECT rtstream_id FROM stream_leases WHERE "
             f"pipeline=? AND rtstream_id IN ({qs}) AND {free}{self.store.skip_locked}) AND {free} "
             f"RETURNING rtstream_id",
             (self.holder, t + self.lease_s, self.holder, t, pipeline, pipeline, *rtstream_ids, self.holder, t,
              self.holder, t))])
        got = {r["rtstream_id"] for r in res[-1]}
        with self._lock:
            for rid in rtstream_ids:
                if rid in got:
                    if (rid, pipeline) not in self.held:
                        log.info("%s: took the %s lease on %s", self.holder, pipeline, rid)
                    self.held.add((rid, pipeline))
                else:
                    self.held.discard((rid, pipeline))
        return got

    def holds(self, rtstream_id: str, pipeline: str) -> bool:
        with self._lock:
            return (rtstream_id, pipeline) in self.held

    def _lease_check(self) -> str:
        return ("EXISTS (SELECT 1 FROM stream_leases WHERE rtstream_id=? AND pipeline=? AND holder=? "
                "AND expires_at > ?)")

    def advance(self, rtstream_id: str, pipeline: str, seq: int, cursor: str | None = None) -> bool:
        """Persist the cursor (the last fragment seq whose results are all stored; ``cursor`` names another
        cursor of this pipeline), if this worker holds the lease. False when it does not (the lease expired and
        another worker may already be past it)."""
        t = now()
        ok = self.store.execute(
            "INSERT INTO pipeline_cursors (rtstream_id, pipeline, seq, updated_at) SELECT ?,?,?,? "
            f"WHERE {self._lease_check()} ON CONFLICT (rtstream_id, pipeline) DO UPDATE SET seq=excluded.seq, "
            "updated_at=excluded.updated_at",
            (rtstream_id, cursor or pipeline, seq, t, rtstream_id, pipeline, self.holder, t)).rowcount > 0
        if not ok:
            self._lost(rtstream_id, pipeline)
        return ok

    def update_if_held(self, rtstream_id: str, pipeline: str, table: str, key: str, key_value, **fields) -> bool:
        """``UPDATE table SET fields WHERE key=key_value`` only while this worker holds the lease."""
        from ..store import _enc
        sets = ",".join(f'"{c}"=?' for c in fields)
        ok = self.store.execute(f"UPDATE {table} SET {sets} WHERE {key}=? AND {self._lease_check()}",
                                [*(_enc(v) for v in fields.values()), key_value, rtstream_id, pipeline,
                                 self.holder, now()]).rowcount > 0
        if not ok:
            self._lost(rtstream_id, pipeline)
        return ok

    def _lost(self, rtstream_id: str, pipeline: str) -> None:
        with self._lock:
            if (rtstream_id, pipeline) in self.held:
                log.warning("%s: lost the %s lease on %s", self.holder, pipeline, rtstream_id)
            self.held.discard((rtstream_id, pipeline))

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                if not self.held:
                    continue
            try:
                rows = self.store.all("UPDATE stream_leases SET expires_at=? WHERE holder=? "
                                      "RETURNING rtstream_id, pipeline", (now() + self.lease_s, self.holder))
            except Exception:
                log.exception("lease renewal failed")
                continue
            kept = {(r["rtstream_id"], r["pipeline"]) for r in rows}
            with self._lock:
                held = list(self.held)
            for rid, pipe in held:
                if (rid, pipe) not in kept:  # taken over meanwhile (this process stalled past the expiry)
                    self._lost(rid, pipe)

    def health(self) -> dict:
        with self._lock:
            return {"holder": self.holder, "held": sorted(f"{p}:{r}" for r, p in self.held)}
