"""A simulated recorder for load and soak runs: real encoded fragments (H.264 GOPs from the recorder's own
encoder, Opus from its own encoder), re-stamped with the current time and the next seq, sent at real-time pace
over the ingest websocket exactly as `vdbnb record` does (R1 over REST, hello, ack per fragment, resend of
everything unacked after a reconnect).

Encoding is done once, up front (``Templates``), so the CPU of this box goes to the server under test, not to
x264 in the load generator."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from vdbnb.media.fragments import Fragment


class Templates:
    """Pre-encoded fragments: ``video`` (one GOP of 2 s each at ``fps``) and ``audio`` (0.5 s Opus each)."""

    def __init__(self, fps: float = 1.0, size=(1920, 1080), video_s: float = 20.0, audio_s: float = 10.0):
        from testkit.media import pcm_fragments, screen_fragments, text_image
        t0 = 1_700_000_000.0
        frames = []
        for i in range(int(video_s * fps)):
            img = text_image([f"Quarterly report draft {i}", "Revenue grew 12% in Q3", "x" * (i % 40)], size)
            frames.append((img, {"window_title": f"report {i} - Editor", "app": "editor"}))
        # self-contained 2 s GOPs: the simulator replays templates in a loop under new seqs
        self.video = screen_fragments("display:1", frames, t0, fps=fps, gop_s=2.0)
        rng = np.random.default_rng(0)
        n = int(48000 * audio_s)
        tt = np.arange(n) / 48000
        pcm = (0.15 * np.sin(2 * np.pi * 220 * tt) * (1 + np.sin(2 * np.pi * 0.5 * tt)) / 2
               + 0.01 * rng.standard_normal(n)).astype(np.float32)
        self.audio = pcm_fragments("mic:default", pcm, t0)

    def for_kind(self, kind: str) -> list[Fragment]:
        return self.video if kind == "video" else self.audio


def restamp(tpl: Fragment, channel_id: str, seq: int, t0: float) -> Fragment:
    d = t0 - tpl.t0
    pk = [{**p, "pts": round(p["pts"] + d, 4)} for p in tpl.packets]
    return Fragment(channel_id=channel_id, seq=seq, kind=tpl.kind, codec=tpl.codec, t0=round(tpl.t0 + d, 4),
                    t1=round(tpl.t1 + d, 4), packets=pk, payload=tpl.payload, codec_info=dict(tpl.codec_info),
                    meta=dict(tpl.meta))


@dataclass
class SimStats:
    produced: dict = field(default_factory=dict)     # channel -> fragments made
    acked: dict = field(default_factory=dict)        # channel -> set of acked seqs
    nacks: list = field(default_factory=list)
    latencies: list = field(default_factory=list)    # s, send → ack (first send only)
    reconnects: int = 0
    resent: int = 0
    duplicates: int = 0
    bytes: int = 0


class SimRecorder:
    """``channels``: {channel_id: "video" | "audio"}. Media of fragment k covers [start + k*dur, ...) and is
    sent when its capture has ended (as a real recorder can only send a GOP once it is complete)."""

    def __init__(self, base_url: str, sid: str, token: str, channels: dict[str, str], templates: Templates,
                 duration: float):
        self.base_url, self.sid, self.token = base_url.rstrip("/"), sid, token
        self.channels, self.tpl, self.duration = channels, templates, duration
        self.stats = SimStats()
        self.unacked: dict[tuple[str, int], bytes] = {}
        self.sent_at: dict[tuple[str, int], float] = {}
        self._new = asyncio.Queue()
        self._done_producing = asyncio.Event()
        self.error: str | None = None

    async def start(self) -> dict:
        chans = [{"channel_id": c, "type": k, "name": c, "store": True} for c, k in self.channels.items()]
        async with httpx.AsyncClient(timeout=30) as h:
            r = await h.post(f"{self.base_url}/capture/session/start", headers={"x-access-token": self.token},
                             json={"session_id": self.sid, "channels": chans})
            r.raise_for_status()
            return r.json()["data"]

    async def stop(self) -> dict:
        async with httpx.AsyncClient(timeout=30) as h:
            r = await h.post(f"{self.base_url}/capture/session/{self.sid}/stop",
                             headers={"x-access-token": self.token})
            r.raise_for_status()
            return r.json()["data"]

    async def _produce(self, cid: str, kind: str, t_start: float):
        tpls = self.tpl.for_kind(kind)
        seq, t = 0, t_start
        while t < t_start + self.duration:
            tpl = tpls[seq % len(tpls)]
            dur = tpl.t1 - tpl.t0
            ready = t + dur
            await asyncio.sleep(max(0.0, ready - time.time()))
            f = restamp(tpl, cid, seq, t)
            self.unacked[(cid, seq)] = f.pack()
            self.stats.produced[cid] = seq + 1
            await self._new.put((cid, seq))
            seq += 1
            t += dur

    async def run(self) -> SimStats:
        t_start = time.time()
        prods = [asyncio.create_task(self._produce(c, k, t_start)) for c, k in self.channels.items()]

        async def all_made():
            await asyncio.gather(*prods)
            self._done_producing.set()
            await self._new.put(None)
        made = asyncio.create_task(all_made())
        try:
            while True:
                try:
                    await self._connection()
                except Exception as e:  # noqa: BLE001 - reconnect on anything, as the recorder does
                    self.error = f"{type(e).__name__}: {e}"
                if self._done_producing.is_set() and not self.unacked:
                    break
                self.stats.reconnects += 1
                await asyncio.sleep(0.2)
        finally:
            made.cancel()
            for p in prods:
                p.cancel()
        return self.stats

    async def _connection(self):
        from websockets.asyncio.client import connect
        url = self.base_url.replace("http://", "ws://", 1) + f"/capture/session/{self.sid}/ingest"
        async with connect(url, additional_headers={"x-access-token": self.token}, max_size=None,
                           compression=None, open_timeout=10, ping_interval=5, ping_timeout=10) as ws:
            hello = json.loads(await ws.recv())
            for cid, last in (hello.get("acked") or {}).items():
                for k in [k for k in self.unacked if k[0] == cid and k[1] <= last]:
                    self._ack(k, dup=True)
            sent_here: set = set()

            async def reader():
                async for msg in ws:
                    m = json.loads(msg)
                    if m.get("type") == "ack":
                        self._ack((m["channel_id"], int(m["seq"])), dup=bool(m.get("duplicate")))
                    elif m.get("type") == "nack":
                        self.stats.nacks.append(m)
                        self.unacked.pop((m.get("channel_id"), m.get("seq")), None)
                    if self._done_producing.is_set() and not self.unacked:
                        return

            rtask = asyncio.create_task(reader())
            try:
                # resend what is unacked from before (a reconnect), then new fragments as they are made
                for k in sorted(self.unacked, key=lambda k: (k[1], k[0])):
                    await self._send(ws, k, sent_here)
                while not rtask.done():
                    get = asyncio.create_task(self._new.get())
                    done, _ = await asyncio.wait({get, rtask}, return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:
                        get.cancel()
                        break
                    k = get.result()
                    if k is None:
                        if not self.unacked:
                            break
                        await asyncio.wait({rtask}, timeout=60)
                        break
                    await self._send(ws, k, sent_here)
                if rtask.done():
                    rtask.result()
            finally:
                rtask.cancel()

    async def _send(self, ws, k, sent_here: set):
        data = self.unacked.get(k)
        if data is None or k in sent_here:
            return
        if k in self.sent_at:
            self.stats.resent += 1
        else:
            self.sent_at[k] = time.time()
        sent_here.add(k)
        self.stats.bytes += len(data)
        await ws.send(data)

    def _ack(self, k, dup: bool):
        if self.unacked.pop(k, None) is None:
            return
        self.stats.acked.setdefault(k[0], set()).add(k[1])
        if dup:
            self.stats.duplicates += 1
        t = self.sent_at.get(k)
        if t is not None and not dup:
            self.stats.latencies.append(time.time() - t)
