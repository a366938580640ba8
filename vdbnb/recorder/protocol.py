"""The recorder's end of the line protocol (docs/recorder-protocol.md): a line ``videodb_recorder|{json}`` on
stdin is a command, dispatched to the handler's ``cmd_<command>`` coroutine; its response and every event
are written to stdout as lines with the same prefix."""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import traceback
from typing import Any, TextIO

from vdbnb.recorder.uplink import UplinkError

PREFIX = "videodb_recorder|"


class CommandError(Exception):
    """A command failed in a way the caller can act on: ``code`` + ``message`` go back in the response."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class LineProtocol:
    """Writes responses and events (thread-safe: source threads emit too) and reads commands from stdin."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self.counters = {"thumbnail": 0, "audio-level": 0}

    def write(self, *msgs: dict) -> None:
        """Write messages as lines, together (one flush)."""
        lines = "".join(PREFIX + json.dumps(m, separators=(",", ":")) + "\n" for m in msgs)
        with self._lock:
            try:
                self.out.write(lines)
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def emit(self, event: str, payload: dict) -> None:
        self.emit_many(event, [payload])

    def emit_many(self, event: str, payloads: list[dict]) -> None:
        """Several events of one kind at once (the audio levels of a chunk): one write."""
        if event in self.counters:
            self.counters[event] += len(payloads)
        self.write(*({"type": "event", "event": event, "payload": p} for p in payloads))

    async def serve(self, handler: Any, stdin: TextIO, done: asyncio.Event) -> bool:
        """Dispatch commands until ``done`` is set or stdin closes; True when stdin closed first."""
        loop = asyncio.get_running_loop()
        eof = asyncio.Event()

        def reader():
            for raw in stdin:
                line = raw.strip()
                if not line.startswith(PREFIX):
                    continue
                try:
                    msg = json.loads(line[len(PREFIX):])
                except ValueError:
                    self.emit("error", {"code": "BAD_MESSAGE", "message": f"not JSON: {line[:200]}"})
                    continue
                loop.call_soon_threadsafe(lambda m=msg: asyncio.ensure_future(self.dispatch(handler, m)))
            loop.call_soon_threadsafe(eof.set)

        threading.Thread(target=reader, name="stdin", daemon=True).start()
        w_eof = asyncio.create_task(eof.wait())
        w_done = asyncio.create_task(done.wait())
        await asyncio.wait({w_eof, w_done}, return_when=asyncio.FIRST_COMPLETED)
        for t in (w_eof, w_done):
            t.cancel()
        return eof.is_set() and not done.is_set()

    async def dispatch(self, handler: Any, msg: dict) -> None:
        """Run one command and write its response: success with the result, or error with a code."""
        cmd, cid = msg.get("command"), msg.get("commandId")
        fn = getattr(handler, "cmd_" + str(cmd), None)
        if fn is None:
            self._respond(cid, "error", {"code": "UNKNOWN_COMMAND", "message": f"unknown command {cmd!r}"})
            return
        try:
            result = await fn(msg.get("params") or {})
            self._respond(cid, "success", result or {})
        except (CommandError, UplinkError) as e:
            self._respond(cid, "error", {"code": e.code, "message": e.message})
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            self._respond(cid, "error", {"code": "INTERNAL", "message": f"{type(e).__name__}: {e}"})

    def _respond(self, command_id, status: str, result: dict) -> None:
        self.write({"type": "response", "commandId": command_id, "status": status, "result": result})
