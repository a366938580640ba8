"""A worker thread that walks the stored fragments of the streams it serves, in order, per stream."""
from __future__ import annotations

import logging
import threading
import time

from ...media.fragments import Fragment, unpack
from ..store import now

log = logging.getLogger("vdbnb.server.pipelines")
BATCH = 16  # fragments per stream per pass, so that one stream cannot starve the others


class Worker:
    name = "worker"

    def __init__(self, pipes):
        self.p = pipes
        self.ctx = pipes.ctx
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"vdbnb-{self.name}", daemon=True)
        self.stats = {"last_event_at": None, "lag_s": 0.0, "queue_depth": 0, "processed": 0, "errors": 0,
                      "last_error": None, "engine": None, "busy_s": 0.0}
        self.pos: dict[str, int] = {}  # stream -> last seq processed here (ahead of the persisted cursor)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(10)

    def streams(self) -> list[dict]:
        raise NotImplementedError

    def process(self, rts: dict, frag: Fragment) -> None:
        raise NotImplementedError

    def start_after(self, rts: dict) -> int:
        """The last fragment seq whose results are all stored (the persisted cursor)."""
        return self.p.cursor(rts["id"], self.name)

    def position(self, rts: dict) -> int:
        """The last fragment seq processed: in this worker's memory while it holds the stream, else the cursor."""
        pos = self.pos.get(rts["id"])
        return pos if pos is not None else self.start_after(rts)

    def commit_point(self, rts: dict, seq: int) -> int | None:
        """After ``seq`` was processed: the seq to persist as the cursor (every result up to it is stored), or
        None to keep the cursor where it is (a step is still open in memory, e.g. an utterance)."""
        return seq

    def forget(self, rtstream_id: str) -> None:
        """Drop what this worker keeps in memory for a stream (its lease went to another worker)."""
        self.pos.pop(rtstream_id, None)

    def idle(self, rts: dict) -> None:
        """Called when a stream has no new fragment (e.g. to finish after the session stopped)."""

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            try:
                self._pass()
            except Exception as e:
                self.stats["errors"] += 1
                self.stats["last_error"] = repr(e)
                log.exception("%s pass failed", self.name)
                time.sleep(0.5)

    def _pass(self) -> None:
        depth = 0
        leases = self.p.leases
        streams = self.streams()
        held = leases.claim(self.name, [r["id"] for r in streams])
        for rts in streams:
            if rts["id"] not in held:  # another worker serves this stream
                self.forget(rts["id"])
                continue
            cur = self.position(rts)
            rows = self.ctx.store.all("SELECT seq, path, t1 FROM fragments WHERE rtstream_id=? AND seq>? AND seq<=? "
                                      "ORDER BY seq LIMIT ?", (rts["id"], cur, rts["last_seq"], BATCH))
            depth += max(0, rts["last_seq"] - cur)
            if not rows:
                self.idle(rts)
                continue
            for r in rows:
                if self._stop.is_set():
                    return
                t = time.perf_counter()
                try:
                    frag = unpack(self.ctx.ingest.fragment_bytes(r["path"]))
                    self.process(rts, frag)
                except Exception as e:
                    self.stats["errors"] += 1
                    self.stats["last_error"] = f"{rts['id']} seq {r['seq']}: {e!r}"
                    log.exception("%s failed on %s seq %s (skipped)", self.name, rts["id"], r["seq"])
                self.stats["busy_s"] += time.perf_counter() - t
                self.stats["processed"] += 1
                self.pos[rts["id"]] = r["seq"]
                safe = self.commit_point(rts, r["seq"])
                if safe is not None and not leases.advance(rts["id"], self.name, safe):
                    self.forget(rts["id"])  # the lease expired: another worker resumes from the cursor
                    break
                lag = max(0.0, now() - r["t1"])
                live = self.p.session_live(rts)
                self.stats["lag_s"] = round(lag, 3) if live else 0.0
                if live:
                    self.p.behind(self.name, rts, lag, rts["last_seq"] - r["seq"])
            if len(rows) == BATCH:
                self.wake.set()  # more to do
        self.stats["queue_depth"] = depth

    def session_done(self, rts: dict) -> bool:
        r = self.ctx.store.one("SELECT status FROM sessions WHERE id=?", (rts["session_id"],))
        return bool(r) and r["status"] in ("stopped", "exported", "failed")

    def health(self) -> dict:
        return dict(self.stats, thread_alive=self._thread.is_alive())
