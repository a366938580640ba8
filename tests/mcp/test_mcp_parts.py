"""The parts of `vdbnb mcp` without the rig: a real server fed real encoded frames (the frame endpoint, its
redaction, agent tokens, the tool-call log), and the pure helpers (times, context items, resource URIs)."""
from __future__ import annotations

import asyncio
import base64
import io
import random
import secrets
import string
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from testkit.media import screen_fragments, text_image
from tests.mcp.mcputil import dump, ocr_has, stdio_params
from vdbnb.mcp.render import context_item
from vdbnb.mcp.timeparse import parse_time


def _key() -> str:
    return "sk-live-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def _screen_session(server, lines: list[str], title: str) -> tuple[str, str]:
    """A capture session whose display shows ``lines`` (real H.264 fragments, as the recorder sends them)."""
    h = server.headers()
    sid = httpx.post(server.url + "/collection/default/capture/session", json={"end_user_id": "t"},
                     headers=h).json()["data"]["session_id"]
    tok = httpx.post(server.url + "/capture/session/token", json={}, headers=h).json()["data"]["token"]
    httpx.post(server.url + "/capture/session/start", headers={"x-access-token": tok}, json={
        "session_id": sid, "channels": [{"channel_id": "display:1", "type": "video", "store": True}]}).raise_for_status()
    # 2 s of an empty screen, then 3 s of the text: the newest fragments continue the first one's GOP
    # (gop_seq), so the frame endpoint must decode them on it
    blank, img = text_image([], size=(1280, 720)), text_image(lines, size=(1280, 720))
    frames = [(blank, {"window_title": "Desktop"})] * 4 + [(img, {"window_title": title, "app": "xterm"})] * 6
    frags = screen_fragments("display:1", frames, time.time() - 5)
    assert len(frags) >= 3 and frags[-1].gop_seq == frags[0].seq, [f.gop_seq for f in frags]
    for f in frags:
        httpx.post(f"{server.url}/capture/session/{sid}/fragment", content=f.pack(),
                   headers={"x-access-token": tok}).raise_for_status()
    rid = httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=h).json()["data"]["rtstreams"][0]["id"]
    return sid, rid


def test_frame_endpoint_blacks_out_secrets(server):
    from vdbnb.ai.ocr import ScreenReader
    rng = random.Random()
    shown = f"TICKET-{rng.randrange(1000, 9999)} assigned to team {rng.choice(['red', 'blue', 'green'])}"
    key, password = _key(), f"Pw{rng.randrange(10**6, 10**7)}!x"
    _, rid = _screen_session(server, [shown, f"api_key = {key}", f"password: {password}"], "Secrets Demo")
    agent = httpx.post(server.url + "/agent/token", json={"name": "t"}, headers=server.headers()).json()["data"]["token"]
    r = httpx.get(f"{server.url}/rtstream/{rid}/frame", headers={"x-access-token": agent}, timeout=120)
    assert r.status_code == 200, r.text
    fr = r.json()["data"]
    assert fr["window_title"] == "Secrets Demo" and fr["display"] == "display:1"
    assert ocr_has(shown, fr["ocr_text"]) and key not in fr["ocr_text"] and password not in fr["ocr_text"]
    assert set(fr["redacted"]) >= {"api_key", "password"} and fr["redacted_lines"] == 2
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(fr["image_b64"]))).convert("RGB"))
    seen = "\n".join(ln.text for ln in ScreenReader().read(img))
    assert ocr_has(shown, seen), seen
    assert key[8:20] not in seen and password not in seen and "api_key" not in seen, seen
    # a client token (the recorder's) cannot read frames; the frame of an audio stream is a clear 400
    tok = httpx.post(server.url + "/capture/session/token", json={}, headers=server.headers()).json()["data"]["token"]
    assert httpx.get(f"{server.url}/rtstream/{rid}/frame", headers={"x-access-token": tok}).status_code == 403


def test_agent_token_reads_only(server):
    u, h = server.url, server.headers()
    agent = httpx.post(u + "/agent/token", json={"expires_in": 3600}, headers=h).json()["data"]
    a = {"x-access-token": agent["token"]}
    who = httpx.get(u + "/agent/whoami", headers=a).json()["data"]
    assert who["kind"] == "agent_token" and who["scope"] == "agent" and who["token_id"] == agent["token_id"]
    assert agent["token"] not in str(who)
    assert httpx.get(u + "/collection/default/capture/session", headers=a).status_code == 200
    for method, path, body in (("POST", "/collection/default/capture/session", {"end_user_id": "x"}),
                               ("POST", "/capture/session/token", {}), ("POST", "/agent/token", {})):
        r = httpx.request(method, u + path, json=body, headers=a)
        assert r.status_code == 403 and r.json()["error_code"] == "AGENT_TOKEN_NOT_ALLOWED", (path, r.text)
    # the tool-call log: an agent event, secrets in the arguments redacted before they are stored
    key = _key()
    r = httpx.post(u + "/collection/default/agent/tool_call", headers=a, json={
        "tool": "search", "arguments": {"query": f"where did I paste {key}"}, "caller": {"transport": "stdio",
                                                                                      "client": "pytest 1"}})
    assert r.status_code == 200
    ev = httpx.get(u + "/collection/default/events", params={"channel": "agent"}, headers=h).json()["data"]["events"]
    assert len(ev) == 1 and ev[0]["event"] == "agent.tool_call" and ev[0]["label"] == "search"
    assert key not in str(ev) and "[api_key]" in ev[0]["data"]["arguments"]["query"]
    assert ev[0]["data"]["logged_by"] == {"kind": "agent_token", "token_id": agent["token_id"]}


def test_stdio_without_a_capture_says_what_to_do(server):
    """Against an empty server every tool answers with a clear message, and screen_now says why it has none."""
    from mcp import Client

    async def main():
        async with Client(stdio_params(server), read_timeout_seconds=60) as c:
            out = {k: await c.call_tool(n, a) for k, n, a in (
                ("search", "search", {"query": "anything"}), ("recent_context", "recent_context", {}),
                ("screen_now", "screen_now", {}), ("list_sessions", "list_sessions", {}),
                ("session_summary", "session_summary", {"session_id": "cap-nope"}),
                ("bad time", "search", {"query": "x", "since": "yesterday-ish"}))}
            resources = {r.uri for r in (await c.list_resources()).resources}
            return out, resources
    out, resources = asyncio.run(main())
    assert not out["search"].is_error and "nothing captured" in out["search"].content[0].text
    assert not out["recent_context"].is_error and out["recent_context"].structured_content["items"] == []
    assert out["screen_now"].is_error and "no display has been recorded" in out["screen_now"].content[0].text
    assert out["session_summary"].is_error and "cap-nope" in out["session_summary"].content[0].text
    assert not out["list_sessions"].is_error
    assert out["bad time"].is_error and "15m" in out["bad time"].content[0].text
    assert {"vdbnb://sessions", "vdbnb://live/transcript", "vdbnb://live/events"} <= {str(u) for u in resources}
    assert all("Traceback" not in dump(r) for r in out.values())


@pytest.mark.parametrize("value, expect", [("15m", 1000.0 - 900), ("2h", 1000.0 - 7200), ("30 s ago", 970.0),
                                           ("1d", 1000.0 - 86400), ("1700000000", 1700000000.0),
                                           ("2026-01-02T03:04:05Z", 1767323045.0), (None, None), ("now", 1000.0)])
def test_parse_time(value, expect):
    assert parse_time(value, now=1000.0) == expect


def test_parse_time_says_what_it_accepts():
    with pytest.raises(ValueError, match="15m"):
        parse_time("last tuesday-ish")


def test_context_items():
    base = {"session_id": "cap-1", "rtstream_id": "rts-1", "start": 100.0, "data": {}}
    assert context_item({**base, "channel": "transcript", "is_final": False, "text": "partial"}) is None
    assert context_item({**base, "channel": "pipeline", "text": "behind"}) is None
    assert context_item({**base, "channel": "agent", "text": "called search"}) is None
    # the kernel channel (branch kernel): channel "kernel", event type "cell"; a private cell never shows
    assert context_item({**base, "channel": "kernel", "event": "cell", "text": "df.head()", "label": "private",
                         "data": {"private": True}}) is None
    cell = context_item({**base, "channel": "kernel", "event": "cell", "channel_id": "kernel",
                         "text": "df.describe()"})
    assert cell["kind"] == "cell" and cell["source"] == "kernel" and cell["text"] == "df.describe()"
    vis = context_item({**base, "channel": "visual_index", "text": "Mail: inbox",
                        "data": {"window_title": "Mail", "ocr_text": "Inbox (3)"}})
    assert vis["window_title"] == "Mail" and vis["screen_text"] == "Inbox (3)"


def test_the_last_pass_is_the_servers_redactor():
    """What reaches an agent is masked as the server masks it ([label redacted]), and a server mask passes
    through untouched (the pass of its own mangled 'password: [password redacted]' into
    'password: [redacted password] redacted]')."""
    from testkit.leaks import leaked, random_secret
    from vdbnb.mcp.privacy import clean
    key, pw = _key(), random_secret(14)
    server_side = {"text": "password: [password redacted]", "ocr": ("export STRIPE_KEY=[api_key redacted]",)}
    assert clean(server_side) == {"text": "password: [password redacted]",
                                  "ocr": ("export STRIPE_KEY=[api_key redacted]",)}
    out = clean({"items": [{"text": f"export STRIPE_KEY={key}"}, f"password: {pw}", "mail bob@example.com", 3]})
    assert out == {"items": [{"text": "export STRIPE_KEY=[api_key redacted]"}, "password: [password redacted]",
                             "mail [email redacted]", 3]}
    assert not leaked(key[6:], str(out)) and not leaked(pw, str(out))


def test_resource_updates_follow_event_kinds():
    from vdbnb.events import Event
    from vdbnb.mcp.live import LIVE_EVENTS, LIVE_TRANSCRIPT, uris_for
    final = Event(channel="transcript", session_id="cap-1", is_final=True, text="hi")
    assert uris_for(final) == {LIVE_TRANSCRIPT, LIVE_EVENTS, "vdbnb://sessions/cap-1/transcript",
                               "vdbnb://sessions/cap-1/events"}
    assert uris_for(Event(channel="transcript", session_id="cap-1", is_final=False, text="h")) == set()
    assert uris_for(Event(channel="agent", session_id="cap-1", text="x")) == set()
    assert uris_for(Event(channel="kernel", event="cell", session_id="cap-1", text="x")) == \
        {LIVE_EVENTS, "vdbnb://sessions/cap-1/events"}


def test_readme_client_snippets_are_valid_and_launch_vdbnb_mcp():
    """The Claude Desktop / Cursor / VS Code snippets in the README parse, and each runs `vdbnb mcp` (stdio) or
    points at its HTTP endpoint with a Bearer credential."""
    import json
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Agents (MCP)", 1)[1].split("\n## ", 1)[0]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.S)]
    assert len(blocks) == 3
    servers = [b.get("mcpServers", b.get("servers"))["vdbnb"] for b in blocks]
    stdio = [s for s in servers if "command" in s]
    http = [s for s in servers if s.get("type") == "http"]
    assert len(stdio) == 2 and all(s["command"] == "vdbnb" and s["args"] == ["mcp"] for s in stdio)
    assert len(http) == 1 and http[0]["url"] == "http://127.0.0.1:8766/mcp"
    assert http[0]["headers"]["Authorization"].startswith("Bearer ")


def test_token_command_mints_an_agent_token(server):
    """`vdbnb mcp token` prints a read-only agent token the server knows; `vdbnb mcp` with a bad credential
    exits at once with the reason instead of starting."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "VDBNB_URL": server.url, "VDBNB_API_KEY": server.api_key}
    out = subprocess.run([sys.executable, "-m", "vdbnb", "mcp", "token", "--name", "pytest"], env=env,
                         capture_output=True, text=True, timeout=60)
    tok = out.stdout.strip()
    assert out.returncode == 0 and tok.startswith("at-"), out.stderr
    who = httpx.get(server.url + "/agent/whoami", headers={"x-access-token": tok}).json()["data"]
    assert who["kind"] == "agent_token"
    bad = subprocess.run([sys.executable, "-m", "vdbnb", "mcp"], env={**env, "VDBNB_API_KEY": "sk-wrong"},
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "cannot use the vdbnb server" in bad.stderr and not bad.stdout


def test_events_are_read_to_the_newest(server):
    """The server pages events from the oldest; the MCP backend follows them to the newest and, past its
    bound, keeps the newest."""
    from vdbnb.mcp.backend import Backend
    b = Backend.connect(server.url, server.api_key)
    for i in range(8):
        b.log_tool_call(tool=f"t{i}", arguments={}, caller={"transport": "test"})
    got = b.events(channel="agent", page=3)
    assert [e["label"] for e in got] == [f"t{i}" for i in range(8)]
    assert [e["label"] for e in b.events(channel="agent", page=3, most=5)] == [f"t{i}" for i in range(3, 8)]


def test_mcp_server_on_an_agent_token_only_reads(server):
    """`vdbnb mcp` given an agent token (not the API key) reads and logs, and even with --allow-control cannot
    start a capture: the vdbnb server refuses, and the agent is told why."""
    from mcp import Client
    agent = httpx.post(server.url + "/agent/token", json={"name": "mcp"}, headers=server.headers()).json()["data"]

    async def main():
        async with Client(stdio_params(server, "--allow-control", key=agent["token"]), read_timeout_seconds=60) as c:
            return await c.call_tool("list_sessions", {}), await c.call_tool("start_capture", {})
    listed, started = asyncio.run(main())
    assert not listed.is_error
    assert started.is_error and "agent token" in started.content[0].text, started.content[0].text
    ev = httpx.get(server.url + "/collection/default/events", params={"channel": "agent"},
                   headers=server.headers()).json()["data"]["events"]
    assert {e["data"]["logged_by"]["token_id"] for e in ev} == {agent["token_id"]}
    assert [e["data"]["outcome"] for e in ev if e["label"] == "start_capture"] == ["error"]
