"""Lossless uplink: R1/R3 over REST with the client token, fragments over the ingest websocket, an on-disk
spool of every unacknowledged fragment, resend after reconnect. See docs/ingest.md."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import httpx

from vdbnb.media.fragments import Fragment
from vdbnb.recorder.replicas import MovedReplica, ingest_url_of, server_urls
from vdbnb.private_fs import open_private, private_dir, write_private


class UplinkError(RuntimeError):
    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class Spool:
    """``<root>/<sid>/<channel>/<seq:08d>.frag`` plus ``channel_id`` per channel. Thread-safe enough: one
    writer per channel (its source thread) and deletions from the event loop."""

    def __init__(self, root: Path, session_id: str):
        self.dir = private_dir(Path(root) / safe(session_id))  # the capture itself: owner only
        self._named: set[str] = set()
        self._dirs: dict[str, Path] = {}

    def chan_dir(self, channel_id: str) -> Path:
        d = self._dirs.get(channel_id)
        if d is None:
            d = self._dirs[channel_id] = private_dir(self.dir / safe(channel_id))
        return d

    def write(self, frag: Fragment) -> tuple[Path, bytes]:
        d = self.chan_dir(frag.channel_id)
        data = frag.pack()
        p = d / f"{frag.seq:08d}.frag"
        tmp = p.with_suffix(".tmp")
        with os.fdopen(open_private(tmp), "wb") as f:
            f.write(data)
        os.replace(tmp, p)
        if frag.channel_id not in self._named:
            write_private(d / "channel_id", frag.channel_id)
            self._named.add(frag.channel_id)
        return p, data

    def next_seq(self, channel_id: str) -> int:
        """One past the highest seq still spooled (the server's acked seqs are the uplink's other bound)."""
        d = self.dir / safe(channel_id)
        n = 0
        for p in d.glob("*.frag") if d.exists() else []:
            try:
                n = max(n, int(p.stem) + 1)
            except ValueError:
                pass
        return n

    def pending(self) -> dict[str, dict[int, Path]]:
        out: dict[str, dict[int, Path]] = {}
        if not self.dir.exists():
            return out
        for d in self.dir.iterdir():
            if not d.is_dir():
                continue
            try:
                cid = (d / "channel_id").read_text()
            except OSError:
                continue
            for p in d.glob("*.frag"):
                try:
                    out.setdefault(cid, {})[int(p.stem)] = p
                except ValueError:
                    pass
        return out

    def remove_if_empty(self):
        left = sum(len(v) for v in self.pending().values())
        if left == 0 and not any(self.dir.glob("*/rejected/*.frag")):  # rejected fragments are kept
            shutil.rmtree(self.dir, ignore_errors=True)
        return left


# nacks the server sends when it cannot store a fragment *for now* (HTTP 507): not a rejection, send it again
RETRY_CODES = {"DISK_FULL", "STORAGE_ERROR"}
RETRY_AFTER_S = 1.0
ERRORS_KEPT = 20  # connection errors remembered (a long outage must not grow a list without bound)


class Uplink:
    def __init__(self, api_url: str | list[str], token: str, session_id: str, spool_root: Path,
                 emit: Callable[[str, dict], None] | None = None, backoff_cap: float = 2.0):
        # one URL (a server, or a load balancer in front of replicas) or several replicas ("a,b" or a list):
        # a link that fails moves on to the next replica, which takes the session (docs/scale-out.md)
        self.api_urls = server_urls(api_url)
        self._url_i = 0
        self.api_url = self.api_urls[0]
        self.token = token
        self.session_id = session_id
        self.spool = Spool(Path(spool_root), session_id)
        self.emit = emit or (lambda e, p: None)
        self.backoff_cap = backoff_cap
        self.http = httpx.AsyncClient(timeout=10, headers={"x-access-token": token})
        self.ingest_url: str | None = None
        self.streams: dict[str, str] = {}
        self.pending: dict[str, dict[int, Path]] = {}   # channel -> seq -> path (unacked)
        self.acked_last: dict[str, int] = {}
        self.stats = {"sent": 0, "acked": 0, "bytes_acked": 0, "nacked": 0, "reconnects": 0, "resent": 0}
        self.rejected: list[dict] = []
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._last_progress = 0.0
        self.last_error: str | None = None
        self.errors: collections.deque = collections.deque(maxlen=ERRORS_KEPT)  # (time, text), newest last
        self.hello: dict | None = None
        self._acked_set: dict[str, set[int]] = {}
        self._outq: collections.deque = collections.deque()   # to send on the current connection
        self._max_sent: dict[str, int] = {}
        self._err_at: dict[str, float] = {}   # error code -> last time reported (transient errors)

    # ---------------------------------------------------------------- replicas
    def _next_replica(self) -> None:
        """Move to the next replica of the list (ingest included)."""
        if len(self.api_urls) < 2:
            return
        self._url_i = (self._url_i + 1) % len(self.api_urls)
        self.api_url = self.api_urls[self._url_i]
        self.ingest_url = ingest_url_of(self.api_url, self.session_id)
        self.stats["failovers"] = self.stats.get("failovers", 0) + 1

    # ---------------------------------------------------------------- REST
    async def _post(self, path: str, body: dict | None = None) -> dict:
        last = None
        for _ in range(len(self.api_urls)):
            try:
                r = await self.http.post(self.api_url + path, json=body or {})
                return self._check(r, path)
            except httpx.HTTPError as e:
                last = e
                self._next_replica()
        raise UplinkError("SERVER_UNREACHABLE", f"cannot reach the vdbnb server at {', '.join(self.api_urls)}: "
                          f"{last!r}; is it running (vdbnb serve)?") from None

    @staticmethod
    def _check(r: httpx.Response, path: str) -> dict:
        try:
            body = r.json()
        except ValueError:
            body = {}
        msg = body.get("message") or body.get("error") or r.text[:300]
        if r.status_code in (401, 403):
            raise UplinkError("AUTH_FAILED", f"the server refused the client token ({r.status_code}) on {path}: "
                              f"{msg}; mint a fresh one with generate_client_token()", r.status_code)
        if r.status_code >= 400 or body.get("success") is False:
            raise UplinkError(body.get("error_code") or f"HTTP_{r.status_code}",
                              f"{path} failed ({r.status_code}): {msg}", r.status_code)
        return body.get("data", body)

    async def start(self, channels: list[dict], extra: dict | None = None) -> dict:
        body = {"session_id": self.session_id, "channels": channels, **(extra or {})}
        data = await self._post("/capture/session/start", body)
        self.ingest_url = data.get("ingest_url")
        if not self.ingest_url or len(self.api_urls) > 1:  # with replicas: the one we talk to
            self.ingest_url = self._default_ingest_url()
        elif self.ingest_url.startswith("http"):
            self.ingest_url = self.ingest_url.replace("http", "ws", 1)
        for c in data.get("channels") or []:
            self.streams[c["channel_id"]] = c.get("stream_id") or c.get("rtstream_id")
        self.r1 = data
        # fragments a previous (crashed) recorder left for this session
        self.pending = self.spool.pending()
        acked = data.get("acked") or {}
        for cid, last in acked.items():
            self._prune(cid, int(last))
        return data

    def next_seq(self, channel_id: str) -> int:
        acked = ((getattr(self, "r1", None) or {}).get("acked") or {}).get(channel_id, -1)
        return max(int(acked) + 1, self.spool.next_seq(channel_id))

    async def stop(self) -> dict:
        return await self._post(f"/capture/session/{self.session_id}/stop")

    # ---------------------------------------------------------------- fragments
    def submit_threadsafe(self, loop: asyncio.AbstractEventLoop, frag: Fragment):
        """From a source thread: spool the fragment now, then let the loop send it."""
        path, data = self.spool.write(frag)
        loop.call_soon_threadsafe(self._enqueue, frag.channel_id, frag.seq, path, data)

    def _enqueue(self, cid: str, seq: int, path: Path, data: bytes | None = None):
        if seq <= self.acked_last.get(cid, -1):
            return
        self.pending.setdefault(cid, {})[seq] = path
        # while disconnected keep only the path: a long outage must not pile fragments up in memory
        self._outq.append((cid, seq, path, data if self.connected.is_set() else None))
        self._wake.set()

    def unacked(self) -> dict[str, int]:
        return {c: len(v) for c, v in self.pending.items() if v}

    def _prune(self, cid: str, last: int):
        self.acked_last[cid] = max(self.acked_last.get(cid, -1), last)
        for seq in [s for s in self.pending.get(cid, {}) if s <= last]:
            p = self.pending[cid].pop(seq)
            try:
                p.unlink()
            except OSError:
                pass

    def run(self):
        self._task = asyncio.create_task(self._run())

    def resume_spooled(self) -> None:
        """Resend what the spool holds without R1 (``vdbnb record --resend``): everything spooled is pending and
        the ingest websocket is the server's default one for this session."""
        self.pending = self.spool.pending()
        self.ingest_url = self._default_ingest_url()

    def _default_ingest_url(self) -> str:
        return ingest_url_of(self.api_url, self.session_id)

    # ---------------------------------------------------------------- the ingest websocket
    async def _run(self):
        """websockets' reconnecting ``connect()``: a failed attempt is retried after a jittered exponential
        backoff (0.1 s doubling up to ``backoff_cap``); a dropped connection is reopened at once. Given several
        replicas, a failed attempt moves on to the next one instead (the session is in the shared store, so any
        replica takes it; what the dead one had not acknowledged is resent). Every error is kept (the last
        ``ERRORS_KEPT``) and the latest one is ``last_error``."""
        from websockets.asyncio.client import connect
        from websockets.client import backoff

        first = True
        while not self._closing:
            url = self.ingest_url
            attempts = connect(url, additional_headers={"x-access-token": self.token}, max_size=None,
                               compression=None, open_timeout=3, ping_interval=5, ping_timeout=5, close_timeout=1,
                               process_exception=self._retry_connect,
                               reconnect_delays=lambda: backoff(0.1, 0.1, self.backoff_cap, 2.0))
            try:
                async for ws in attempts:
                    if self._closing:
                        break
                    try:
                        await self._hello(ws)
                        if not first:
                            self.stats["reconnects"] += 1
                        first = False
                        await self._session(ws)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # noqa: BLE001 - the connection broke: reconnect
                        self._error(f"{type(e).__name__}: {e}")
                    finally:
                        self.connected.clear()
                    if self._closing:
                        break
            except MovedReplica:
                await asyncio.sleep(0.1)  # the next replica, at once
                continue
            break

    def _retry_connect(self, e: Exception) -> Exception | None:
        """websockets' process_exception: every failed attempt is retried (the fragments wait in the spool);
        a refused client token is said once per attempt so the user can act. With several replicas, an
        unreachable one is left for the next (the returned exception ends this ``connect()``)."""
        from websockets.exceptions import InvalidStatus

        if isinstance(e, InvalidStatus):
            code = e.response.status_code
            self._error(f"ingest websocket refused ({code})")
            if code in (401, 403):
                self.emit("error", {"code": "AUTH_FAILED", "message": "the ingest websocket refused the client "
                                    "token; fragments stay in the spool at " + str(self.spool.dir)})
                return None
        else:
            self._error(f"{type(e).__name__}: {e}")
        if len(self.api_urls) > 1:
            self._next_replica()
            return MovedReplica(self.api_url)
        return None

    def _error(self, text: str) -> None:
        self.last_error = text
        self.errors.append((round(time.time(), 3), text))

    async def _hello(self, ws) -> None:
        """The server's first message says what it has: acknowledged fragments leave the spool."""
        self.hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        for cid, last in (self.hello.get("acked") or {}).items():
            self._prune(cid, int(last))
        self.connected.set()
        self.last_error = None

    async def _session(self, ws):
        """One connection: resend everything unacknowledged (seq order, channels interleaved), then send new
        fragments as they come, while a reader task handles acks and nacks."""
        inflight: dict[tuple[str, int], int] = {}
        self._outq = collections.deque(sorted(((c, q, p, None) for c, d in self.pending.items()
                                               for q, p in d.items()), key=lambda x: (x[1], x[0])))
        rtask = asyncio.create_task(self._read_replies(ws, inflight))
        try:
            while not rtask.done():
                while self._outq and not rtask.done():
                    await self._send_next(ws, inflight)
                if rtask.done():
                    break
                self._wake.clear()
                if not self._outq:
                    await self._wake.wait()
            rtask.result()
        finally:
            rtask.cancel()

    async def _send_next(self, ws, inflight: dict) -> None:
        cid, seq, path, data = self._outq.popleft()
        if seq not in self.pending.get(cid, {}):
            return  # acked meanwhile
        if data is None:
            try:
                data = path.read_bytes()
            except OSError:
                self.pending.get(cid, {}).pop(seq, None)
                return
        await ws.send(data)
        inflight[(cid, seq)] = len(data)
        self.stats["sent"] += 1
        if seq <= self._max_sent.get(cid, -1):
            self.stats["resent"] += 1
        else:
            self._max_sent[cid] = seq

    async def _read_replies(self, ws, inflight: dict) -> None:
        try:
            async for msg in ws:
                if isinstance(msg, bytes):
                    continue
                m = json.loads(msg)
                if m.get("type") == "ack":
                    self._on_ack(m, inflight)
                elif m.get("type") == "nack" and m.get("error_code") in RETRY_CODES and m.get("seq") is not None \
                        and int(m["seq"]) in self.pending.get(m.get("channel_id"), {}):
                    self._on_retryable_nack(m, inflight)
                elif m.get("type") == "nack":
                    self._on_rejection(m, inflight)
        finally:
            self._wake.set()

    def _on_ack(self, m: dict, inflight: dict) -> None:
        """Stored by the server: the spooled copy goes, the contiguous acked seq moves on."""
        cid, seq = m["channel_id"], int(m["seq"])
        p = self.pending.get(cid, {}).pop(seq, None)
        size = inflight.pop((cid, seq), 0)
        if p is not None:
            try:
                p.unlink()
            except OSError:
                pass
            self.stats["acked"] += 1
            self.stats["bytes_acked"] += size
        ok = self._acked_set.setdefault(cid, set())
        ok.add(seq)
        last = self.acked_last.get(cid, -1)
        while last + 1 in ok:
            last += 1
            ok.discard(last)
        self.acked_last[cid] = last
        self._progress()

    def _on_retryable_nack(self, m: dict, inflight: dict) -> None:
        """The server could not store it now (disk full): it stays pending and is sent again later."""
        cid, seq = m["channel_id"], int(m["seq"])
        self.stats["retried"] = self.stats.get("retried", 0) + 1
        inflight.pop((cid, seq), None)
        path = self.pending[cid][seq]
        asyncio.get_running_loop().call_later(RETRY_AFTER_S, self._retry, cid, seq, path)
        code = m["error_code"]
        if time.time() - self._err_at.get(code, 0.0) >= 5.0:
            self._err_at[code] = time.time()
            self.emit("error", {"code": code, "channel_id": cid, "seq": seq,
                                "message": f"the server could not store fragment {cid}#{seq}: {m.get('message')}; "
                                           f"it stays in the spool at {self.spool.dir} and is sent again every "
                                           f"{RETRY_AFTER_S:.0f} s"})

    def _on_rejection(self, m: dict, inflight: dict) -> None:
        """Rejected for good: the bytes are kept aside (``rejected/``), out of the resend queue."""
        cid, seq = m.get("channel_id"), m.get("seq")
        self.stats["nacked"] += 1
        self.rejected.append(m)
        if cid is not None and seq is not None:
            p = self.pending.get(cid, {}).pop(int(seq), None)
            if p is not None:
                rej = p.parent / "rejected"
                private_dir(rej)
                try:
                    os.replace(p, rej / p.name)
                except OSError:
                    pass
            inflight.pop((cid, int(seq)), None)
        self.emit("error", {"code": m.get("error_code") or "NACK", "channel_id": cid, "seq": seq,
                            "message": f"server rejected fragment {cid}#{seq}: {m.get('message')}"})
        self._wake.set()

    def _retry(self, cid: str, seq: int, path: Path):
        if seq in self.pending.get(cid, {}):
            self._outq.append((cid, seq, path, None))
            self._wake.set()

    def _progress(self, force: bool = False):
        now = time.time()
        if not force and now - self._last_progress < 0.5:
            return
        self._last_progress = now
        self.emit("upload-progress", {"sessionId": self.session_id, "acked": dict(self.acked_last),
                                      "unacked": self.unacked(), "bytes_acked": self.stats["bytes_acked"],
                                      "fragments_acked": self.stats["acked"], "connected": self.connected.is_set(),
                                      "reconnects": self.stats["reconnects"]})

    async def drain(self, timeout: float) -> bool:
        t_end = time.time() + timeout
        while time.time() < t_end:
            if not any(self.pending.values()):
                return True
            await asyncio.sleep(0.05)
        return not any(self.pending.values())

    async def close(self):
        self._closing = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.http.aclose()
        self._progress(force=True)
