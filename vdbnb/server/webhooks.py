"""Durable webhook outbox: at least once, in order per session, retried with backoff across restarts,
signed as the Standard Webhooks spec says (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Every process that shares the store runs an :class:`Outbox`, but only one dispatches at a time (the
``outbox`` role of :meth:`Store.try_lock`: an advisory lock on PostgreSQL, released when its holder dies);
the others wait to take over. A message's id is derived from what it reports (the event id), so a retried
step queues it once.

Retries are bounded: a message not delivered ``retry_s`` after it was queued (default 24 h) becomes a dead
letter, set aside so that the session's later messages go on; dead letters are listed by the API
(``GET /webhooks/dead-letters``), counted by ``vdbnb info`` and ``/health``, and replayed on request (in their
original order). A URL that is not http(s) is never called: its messages are dead letters at once."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from datetime import datetime, timezone

import httpx
from standardwebhooks.webhooks import Webhook

from .store import RoleLock, Store, now

log = logging.getLogger("vdbnb.server.webhooks")
ROLE = "outbox"
TAKEOVER_POLL_S = 1.0  # a process without the dispatcher role tries to take it this often


class Outbox:
    def __init__(self, store: Store, secret: str, max_backoff: float = 5.0, timeout: float = 5.0,
                 retry_s: float = 86400.0, notifier=None):
        self.store = store
        self.retry_s = retry_s
        self.signer = Webhook(secret)
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.notifier = notifier
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.role: RoleLock | None = None
        if notifier is not None:
            notifier.on("outbox", lambda _: self._wake_up())

    def enqueue(self, url: str, body: dict, session_id: str | None, key: str | None = None) -> str:
        """Store a delivery, inside the transaction of the state change it reports. ``key`` (an event id)
        makes the message id deterministic: the same key and URL are queued once."""
        msg_id = "msg_" + (hashlib.sha256(f"{key}|{url}".encode()).hexdigest()[:32] if key else uuid.uuid4().hex)
        if self.store.insert("webhook_outbox", {"msg_id": msg_id, "session_id": session_id or "", "url": url,
                                                "body": json.dumps(body), "created_at": now(),
                                                "next_attempt_at": 0}, ignore=True):
            self.poke()
        return msg_id

    def poke(self) -> None:
        if self.notifier is not None:
            self.notifier.poke("outbox")
        else:
            self._wake_up()

    def _wake_up(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    @property
    def dispatching(self) -> bool:
        return self.role is not None and self.role.held()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.role is not None:
            await asyncio.to_thread(self.role.release)
            self.role = None

    def pending(self) -> int:
        return self.store.one("SELECT COUNT(*) n FROM webhook_outbox WHERE delivered_at IS NULL "
                              "AND dead_at IS NULL")["n"]

    def dead(self) -> int:
        return self.store.one("SELECT COUNT(*) n FROM webhook_outbox WHERE dead_at IS NOT NULL")["n"]

    def dead_letters(self, limit: int = 1000) -> list[dict]:
        return self.store.all("SELECT msg_id, session_id, url, attempts, last_error, created_at, dead_at, body "
                              "FROM webhook_outbox WHERE dead_at IS NOT NULL ORDER BY id LIMIT ?", (limit,))

    def replay(self, msg_ids: list[str] | None = None) -> int:
        """Dead letters (all, or these) are queued again with a fresh retry window; returns how many."""
        q = "UPDATE webhook_outbox SET dead_at=NULL, attempts=0, next_attempt_at=0, created_at=? " \
            "WHERE dead_at IS NOT NULL"
        args: list = [now()]
        if msg_ids is not None:
            q += f" AND msg_id IN ({','.join('?' * len(msg_ids)) or 'NULL'})"
            args += list(msg_ids)
        n = self.store.execute(q, args).rowcount
        self.poke()
        return n

    def _heads(self) -> list[dict]:
        # the oldest undelivered live message of each session: later ones wait (ordering per session)
        return self.store.all(
            "SELECT o.* FROM webhook_outbox o JOIN (SELECT session_id, MIN(id) mid FROM webhook_outbox "
            "WHERE delivered_at IS NULL AND dead_at IS NULL GROUP BY session_id) h ON o.id = h.mid")

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                try:
                    if not self.dispatching:
                        if self.role is not None:
                            log.warning("webhook dispatcher role lost (database connection); taking it again")
                            self.role = None
                        self.role = await asyncio.to_thread(self.store.try_lock, ROLE)
                        if self.role is None:  # another process dispatches; take over if it dies
                            await asyncio.sleep(TAKEOVER_POLL_S)
                            continue
                    heads = await asyncio.to_thread(self._heads)
                    due = [h for h in heads if (h["next_attempt_at"] or 0) <= now()]
                    if due:
                        await asyncio.gather(*(self._deliver(client, h) for h in due))
                        continue
                    wait = min([(h["next_attempt_at"] or 0) - now() for h in heads] + [1.0])
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))
                    except asyncio.TimeoutError:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the worker die
                    log.exception("webhook worker error; retrying")
                    await asyncio.sleep(0.5)

    async def _deliver(self, client: httpx.AsyncClient, row: dict) -> None:
        ts = datetime.now(timezone.utc)
        body = row["body"]
        sig = self.signer.sign(row["msg_id"], ts, body)
        headers = {"content-type": "application/json", "webhook-id": row["msg_id"],
                   "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": sig,
                   "user-agent": "vdbnb-webhooks/1"}
        error = None
        if not str(row["url"]).lower().startswith(("http://", "https://")):
            await self._bury(row, "callback_url is not an http(s) URL: never called")
            return
        try:
            r = await client.post(row["url"], content=body, headers=headers)
            if 200 <= r.status_code < 300:
                await asyncio.to_thread(self.store.update, "webhook_outbox", "id", row["id"], delivered_at=now(),
                                        attempts=row["attempts"] + 1, last_error=None)
                return
            error = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        attempts = row["attempts"] + 1
        if now() - (row["created_at"] or 0) >= self.retry_s:
            row["attempts"] = attempts
            await self._bury(row, error)
            return
        backoff = min(self.max_backoff, 0.25 * (2 ** min(attempts, 10)))
        await asyncio.to_thread(self.store.update, "webhook_outbox", "id", row["id"], attempts=attempts,
                                last_error=error, next_attempt_at=time.time() + backoff)
        if attempts in (1, 5) or attempts % 20 == 0:
            log.warning("webhook %s to %s failed (%s); attempt %d, retrying in %.1fs",
                        row["msg_id"], row["url"], error, attempts, backoff)

    async def _bury(self, row: dict, error: str | None) -> None:
        """A dead letter: kept, listed, replayable; the session's later messages go on."""
        await asyncio.to_thread(self.store.update, "webhook_outbox", "id", row["id"], attempts=row["attempts"],
                                last_error=error, dead_at=now())
        log.warning("webhook %s to %s is a dead letter after %d attempts (%s); replay it with POST "
                    "/webhooks/dead-letters/replay", row["msg_id"], row["url"], row["attempts"], error)
