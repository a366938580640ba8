"""Shared by the live benches: a capture session on a real server, real-time upload, websocket collection."""
from __future__ import annotations

import asyncio
import json
import time

import httpx


async def open_session(c: httpx.AsyncClient, channel_id: str, kind: str) -> tuple[str, dict]:
    """Create a session with the API key, start it with a client token (as the recorder does)."""
    sid = (await c.post("/collection/default/capture/session", json={"end_user_id": "bench"})).json()["data"][
        "session_id"]
    tok = (await c.post("/capture/session/token", json={"expires_in": 3600})).json()["data"]["token"]
    ch = {"x-access-token": tok}
    (await c.post("/capture/session/start", headers=ch, json={"session_id": sid, "channels": [
        {"channel_id": channel_id, "type": kind, "name": channel_id}]})).raise_for_status()
    return sid, ch


async def upload_live(c: httpx.AsyncClient, sid: str, ch: dict, frags) -> None:
    """Upload each fragment when its media would have been captured (real-time pace)."""
    for f in frags:
        delay = f.t1 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        (await c.post(f"/capture/session/{sid}/fragment", headers=ch, content=f.pack())).raise_for_status()


def collect(ws, channel: str, out: list, keep=lambda data: True) -> asyncio.Task:
    """Append (arrival time, data) of every websocket message of ``channel`` to ``out``, in a task."""
    async def reader():
        async for m in ws:
            d = json.loads(m)
            if d.get("channel") == channel and keep(d["data"]):
                out.append((time.time(), d["data"]))
    return asyncio.create_task(reader())
