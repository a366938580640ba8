"""Live events over the websocket: an async client (as the official SDK's) and a background listener."""
from __future__ import annotations

import asyncio
import collections
import json
import threading
from typing import AsyncGenerator, Callable

import websockets

from ..events import Event


class WebSocketConnection:
    """``await ws.connect()`` reads the first message (``connection_id``); ``ws.receive()`` yields dicts."""

    def __init__(self, url: str, all_events: bool = False) -> None:
        self.url = url + ("&all=1" if all_events and "all=" not in url else "")
        self._connection = None
        self.connection_id: str | None = None

    async def connect(self) -> "WebSocketConnection":
        url = self.url
        if self.connection_id and "connection_id=" not in url:
            url += f"&connection_id={self.connection_id}"   # keep the same id across reconnects
        self._connection = await websockets.connect(url, max_size=8 * 1024 * 1024)
        first = json.loads(await self._connection.recv())
        self.connection_id = first.get("connection_id")
        return self

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def receive(self) -> AsyncGenerator[dict, None]:
        if self._connection is None:
            raise ConnectionError("WebSocket is not connected: await ws.connect() first.")
        async for message in self._connection:
            try:
                yield json.loads(message)
            except ValueError:
                yield {"raw": message}

    async def stream(self, channel: str | None = None, id: str | None = None) -> AsyncGenerator[dict, None]:
        """Like Node's ``stream({channel, id})``: only messages of that channel and/or stream/index id."""
        async for m in self.receive():
            if channel and (m.get("channel") or m.get("type")) != channel:
                continue
            if id and id not in (m.get("rtstream_id"), m.get("index_id"), m.get("capture_session_id")):
                continue
            yield m

    async def send(self, message: dict) -> None:
        if self._connection is None:
            raise ConnectionError("WebSocket is not connected.")
        await self._connection.send(json.dumps(message))

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()


class EventListener:
    """Runs a websocket on a background thread (the kernel never blocks) and calls ``on_event(Event)``.

    Reconnects with websockets' jittered exponential backoff (0.2 s doubling up to 5 s); ``connection_id``
    stays the same across reconnects so targeted events keep arriving. Every attempt needs a fresh URL (a
    single-use ticket), so websockets' reconnecting ``connect()`` iterator, which reuses one URI, does not
    fit here. The last ``ERRORS_KEPT`` errors are kept in ``errors``. Used by the notebook layer."""

    ERRORS_KEPT = 50

    def __init__(self, url_factory: Callable[[], str], on_event: Callable[[Event], None],
                 all_events: bool = True) -> None:
        self._url_factory = url_factory
        self.on_event = on_event
        self.all_events = all_events
        self.connection_id: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vdbnb-events", daemon=True)
        self.errors: collections.deque[str] = collections.deque(maxlen=self.ERRORS_KEPT)

    def start(self, timeout: float = 10) -> "EventListener":
        self._thread.start()
        if not self.connected.wait(timeout):
            raise ConnectionError(f"could not open the event websocket: {list(self.errors)[-1:] or 'timeout'}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.client import backoff

        delays = backoff(0.2, 0.2, 5.0, 2.0)
        ws = WebSocketConnection(self._url_factory(), all_events=self.all_events)
        while not self._stop.is_set():
            try:
                ws.connection_id = self.connection_id
                await ws.connect()
                self.connection_id = ws.connection_id
                self.connected.set()
                delays = backoff(0.2, 0.2, 5.0, 2.0)
                while not self._stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws._connection.recv(), timeout=0.5)
                    except asyncio.TimeoutError:
                        continue
                    try:
                        msg = json.loads(raw)
                    except ValueError:
                        continue
                    if msg.get("channel"):
                        try:
                            self.on_event(Event.from_ws(msg))
                        except Exception as e:  # a bad callback must not kill the listener
                            self.errors.append(f"on_event failed: {e!r}")
            except Exception as e:
                self.errors.append(repr(e))
                await asyncio.sleep(next(delays))
                try:
                    ws = WebSocketConnection(self._url_factory(), all_events=self.all_events)
                except Exception as e2:
                    self.errors.append(repr(e2))
        await ws.close()
