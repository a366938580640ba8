"""`vdbnb mcp --allow-control` on the rig: an agent starts a capture (recorder + real server + models), sees
the screen through it, and stops it; a client of the handshake era (protocol 2025, `resources/subscribe`)
is told that the sessions resource changed."""
from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

from testkit.server import ServerProc
from tests.mcp.conftest import CITIES, WINDOW_WORDS
from tests.mcp.mcputil import ocr_has, stdio_params

pytestmark = [pytest.mark.slow, pytest.mark.rig, pytest.mark.timeout(600)]


def test_agent_starts_and_stops_a_capture(rig, tmp_path):
    from mcp import Client

    from rig.tutorial import close_windows, show_window
    rng = random.Random()
    title = f"{rng.choice(WINDOW_WORDS)} Board {rng.randrange(100, 999)}"
    shown = f"CASE-{rng.randrange(1000, 9999)} closed in {rng.choice(CITIES)}"
    server = ServerProc(tmp_path / "data").start(timeout=60)
    updated: list[str] = []

    async def on_message(msg):
        m = getattr(msg, "root", msg)
        if getattr(m, "method", None) == "notifications/resources/updated":
            updated.append(str(m.params.uri))

    async def main():
        async with Client(stdio_params(server, "--allow-control"), mode="legacy", message_handler=on_message,
                          read_timeout_seconds=120) as c:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # resources/subscribe is the 2025 way, deprecated by the SDK
                await c.subscribe_resource("vdbnb://sessions")
            r = await c.call_tool("start_capture", {"channels": ["display:1", "mic"]})
            assert not r.is_error, r.content[0].text
            st = r.structured_content
            assert st["status"] == "active" and "display:1" in st["channels"]
            assert any(ch.startswith("mic") for ch in st["transcribing"]) and st["indexing"] == ["display:1"]
            again = await c.call_tool("start_capture", {})
            assert not again.is_error and "already capturing" in again.content[0].text
            win = await asyncio.to_thread(show_window, title, [shown], 1)
            deadline = time.time() + 60
            seen = ""
            while time.time() < deadline:  # the recorder this server started shows the window
                r = await c.call_tool("screen_now", {})
                if not r.is_error:
                    seen = r.structured_content["ocr_text"]
                    if ocr_has(shown, seen):
                        break
                await asyncio.sleep(1)
            assert ocr_has(shown, seen), seen
            assert r.structured_content["session_id"] == st["session_id"] and r.structured_content["live"]
            await asyncio.to_thread(win.close)
            r = await c.call_tool("stop_capture", {})
            assert not r.is_error and r.structured_content["status"] == "stopped", r.content[0].text
            r = await c.call_tool("stop_capture", {})
            assert r.is_error and "no capture" in r.content[0].text
            for _ in range(40):
                if "vdbnb://sessions" in updated:
                    break
                await asyncio.sleep(0.25)
            return st["session_id"]
    try:
        sid = asyncio.run(main())
        s = httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=server.headers()).json()["data"]
        assert s["status"] in ("stopped", "exported") and not s["error"], s
        assert "vdbnb://sessions" in updated, updated
        ev = httpx.get(f"{server.url}/collection/default/events", params={"channel": "agent"},
                       headers=server.headers()).json()["data"]["events"]
        outcomes = [(e["label"], e["data"]["outcome"]) for e in ev]
        assert ("start_capture", "ok") in outcomes and ("stop_capture", "ok") in outcomes
        assert ("stop_capture", "error") in outcomes
    finally:
        close_windows()
        server.stop()
