"""Export work as jobs in the store: queued by whichever api replica was asked, run by a process that runs
exports (``vdbnb serve --role all``, or ``vdbnb worker``), progress and result in the job's row, so that a poll
on any replica sees them.

A job row (``export_jobs``) has a deterministic id (``session:<id>``, ``rtstream:<id>``, ``clip:<hash>``), so
that replicas asked for the same export queue it once. A runner claims the oldest queued job, or a running
one whose lease expired (its holder died), with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL: runners
that claim at the same moment skip each other's rows instead of queueing behind them, and the claim's
``UPDATE`` re-checks the state, so a job has one holder. The holder renews its lease (``VDBNB_LEASE_S``) from a
thread of its own while the job runs; a job whose holder died is claimed again, at most ``MAX_ATTEMPTS`` times.
Every write of a running job (progress, result) is conditional on its holder: a runner that lost its job
writes nothing.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from .store import _enc, dec, now

log = logging.getLogger("vdbnb.server.jobs")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
MAX_ATTEMPTS = 3
RETRY_AFTER_S = 10.0   # a job that failed while it ran is queued again by a request this long after the failure
PROGRESS_EVERY_S = 0.5


class JobFailed(Exception):
    """A job's work failed for good (e.g. nothing was recorded): the job is failed with this message."""

    def __init__(self, message: str, code: str = "NO_MEDIA"):
        super().__init__(message)
        self.message, self.code = message, code


Run = Callable[[dict, Callable[[float], None]], dict]   # (job row, progress callback) -> result
Finish = Callable[[dict], None]                        # (job row with its final status, result, error)


class Jobs:
    """The export job queue of one process: submit/get/wait on any role, run (``start``) where exports run.
    ``runners`` maps a job kind to ``(run, finish)``: ``run`` does the work and returns the result; ``finish``
    (or None) records what the job's end means elsewhere (e.g. the session's state and event), in the same
    transaction as the job's final state."""

    def __init__(self, store, notifier, holder: str, lease_s: float, runners: dict[str, tuple[Run, Finish | None]]):
        self.store = store
        self.notifier = notifier
        self.holder = holder
        self.lease_s = lease_s
        self.runners = runners
        self.running = False
        self.current: str | None = None
        self.stats = {"done": 0, "failed": 0, "lost": 0}
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        notifier.on("export", self._poked)

    # ---- any process
    def submit(self, job_id: str, kind: str, params: dict, session_id: str | None = None,
               rtstream_id: str | None = None, base_url: str | None = None, redo: bool = False) -> dict:
        """Queue the job unless it is queued or running, done with the same ``params``, or failed for good
        with them (nothing to export); returns its row. A job asked for with other params, or that failed
        otherwise (an error while it ran) at least ``RETRY_AFTER_S`` ago, is queued again (polls right after
        a failure see it). ``base_url``: where the asking replica is reached
        (the URLs a job's event carries). ``redo``: a done job is queued again (its output is gone, e.g. a
        cached clip the retention pass removed)."""
        t = now()
        enc = json.dumps(params, sort_keys=True)
        row = {"id": job_id, "kind": kind, "session_id": session_id, "rtstream_id": rtstream_id, "params": enc,
               "base_url": base_url, "status": QUEUED, "progress": 0.0, "attempts": 0, "created_at": t,
               "updated_at": t}
        with self.store.transaction():
            if self.store.insert("export_jobs", row, ignore=True) or self.store.execute(
                    "UPDATE export_jobs SET status=?, params=?, base_url=?, progress=0, attempts=0, holder=NULL, "
                    "expires_at=NULL, result=NULL, error=NULL, error_code=NULL, created_at=?, updated_at=? "
                    "WHERE id=? AND (params!=? AND status IN (?,?) OR status=? AND error_code IS NULL AND "
                    "updated_at < ? OR status=? AND ?=1)", (QUEUED, enc, base_url, t, t, job_id, enc, DONE, FAILED,
                                                           FAILED, t - RETRY_AFTER_S, DONE, int(redo))).rowcount:
                self.notifier.poke("export", job_id)  # the runners wake (on commit, on PostgreSQL)
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        r = self.store.one("SELECT * FROM export_jobs WHERE id=?", (job_id,))
        if r is not None:
            r["params"], r["result"] = dec(r["params"], {}), dec(r["result"], None)
        return r

    def active(self, session_id: str) -> bool:
        """A job of this session is queued or running."""
        return self.store.one("SELECT 1 AS x FROM export_jobs WHERE session_id=? AND status IN (?,?)",
                              (session_id, QUEUED, RUNNING)) is not None

    def wait(self, job_id: str, timeout: float) -> dict:
        """Block until the job is done or failed (its row), or ``timeout`` passed (the row as it is)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(job_id)
            left = deadline - time.monotonic()
            if r is None or r["status"] in (DONE, FAILED) or left <= 0:
                return r
            with self._changed:
                self._changed.wait(min(left, 0.5))

    def _poked(self, _payload: str) -> None:
        self._wake.set()
        with self._changed:
            self._changed.notify_all()

    # ---- a process that runs exports
    def start(self) -> None:
        self.running = True
        self._thread = threading.Thread(target=self._loop, name="vdbnb-exports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def claim(self) -> dict | None:
        """The oldest job this process may run (queued, or running with an expired lease), now held by it."""
        t = now()
        free = "(status=? OR (status=? AND expires_at < ?))"
        r = self.store.one(
            f"UPDATE export_jobs SET status=?, holder=?, expires_at=?, attempts=attempts+1, updated_at=? "
            f"WHERE id = (SELECT id FROM export_jobs WHERE {free} ORDER BY created_at LIMIT 1"
            f"{self.store.skip_locked}) AND {free} RETURNING *",
            (RUNNING, self.holder, t + self.lease_s, t, QUEUED, RUNNING, t, QUEUED, RUNNING, t))
        if r is not None:
            r["params"] = dec(r["params"], {})
        return r

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.claim()
            except Exception:
                log.exception("claiming an export job failed")
                job = None
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._run(job)
            except Exception:  # its lease runs out; another attempt (here or elsewhere) takes it
                log.exception("export job %s could not be finished", job["id"])

    def _held(self, job_id: str, **fields) -> bool:
        """Write ``fields`` to the job while this process holds it (False: it does not any more)."""
        sets = ",".join(f'"{c}"=?' for c in fields)
        return self.store.execute(f"UPDATE export_jobs SET {sets} WHERE id=? AND holder=? AND status=?",
                                  [*(_enc(v) for v in fields.values()), job_id, self.holder, RUNNING]).rowcount > 0

    def _run(self, job: dict) -> None:
        jid = job["id"]
        self.current = jid
        stop_renew = threading.Event()
        lost = threading.Event()

        def renew():
            while not stop_renew.wait(self.lease_s / 3):
                try:
                    if not self._held(jid, expires_at=now() + self.lease_s):
                        lost.set()
                        return
                except Exception:
                    log.exception("export job lease renewal failed")
        renewer = threading.Thread(target=renew, name="vdbnb-export-lease", daemon=True)
        renewer.start()
        last = [0.0]

        def progress(f: float) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S and not lost.is_set():
                last[0] = time.monotonic()
                try:
                    self._held(jid, progress=round(max(0.0, min(0.99, f)), 3), updated_at=now())
                except Exception:
                    log.exception("export progress not saved")
        try:
            if job["attempts"] > MAX_ATTEMPTS:
                raise JobFailed(f"gave up after {MAX_ATTEMPTS} attempts (the processes running it stopped)",
                                "EXPORT_FAILED")
            result = self.runners[job["kind"]][0](job, progress)
            status, fields = DONE, {"result": result, "progress": 1.0, "error": None}
        except JobFailed as e:  # for good: asking again with the same params answers this
            status, fields = FAILED, {"error": e.message, "error_code": e.code}
        except Exception as e:
            log.exception("export job %s failed", jid)
            status, fields = FAILED, {"error": f"export failed: {getattr(e, 'message', e)}"}
        finally:
            stop_renew.set()
            renewer.join(5)
            self.current = None
        with self.store.transaction():
            if self._held(jid, status=status, updated_at=now(), **fields):
                self.notifier.poke("export", jid)
                self.stats["done" if status == DONE else "failed"] += 1
                finish = self.runners[job["kind"]][1]
                if finish is not None:  # what the job's end means commits with it (e.g. the session's event)
                    finish({**job, "status": status, "result": None, "error_code": None, **fields})
            else:
                self.stats["lost"] += 1
                log.warning("export job %s was taken over by another process; its result is theirs", jid)

    def health(self) -> dict:
        return {"running": self.running, "current": self.current, **self.stats}
