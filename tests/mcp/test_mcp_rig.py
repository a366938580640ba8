"""`vdbnb mcp` driven by the official `mcp` SDK's own client, over stdio and streamable HTTP, against a real
capture on the rig (recorder + real server + real models; see conftest.py).

Speech played into the microphone is found by `search` (with a clip that plays) and is in `recent_context`;
the window's generated text is in `screen_now`'s OCR text and in its image; the secret shown on screen is in
none of the results; `start_capture` is refused without --allow-control; HTTP refuses requests without
credentials; every tool call is an `agent` event on the server; a resource subscription hears new speech.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import re

import httpx
import numpy as np
import pytest

from testkit.speech import words
from tests.mcp.mcputil import HttpMcp, dump, http_client, ocr_has, stdio_params

pytestmark = [pytest.mark.slow, pytest.mark.rig, pytest.mark.timeout(600)]
TOOLS = {"search", "recent_context", "screen_now", "list_sessions", "session_summary", "start_capture", "stop_capture"}


def overlap(ref: str, hyp: str) -> float:
    """Share of the reference's words found in the hypothesis (speech-to-text may slip a word)."""
    r, h = words(ref), set(words(hyp))
    return sum(w in h for w in r) / max(1, len(r))


def spans(items: list[dict], start: str = "start", end: str | None = "end", gap: float = 1.5,
          most: int = 3) -> list[dict]:
    """Every run of up to ``most`` items adjacent in time on one stream (each begins within ``gap`` s of the end
    of the one before; without ``end``, of its start), as {"text": joined, "items": [...]}: the live speech-to-
    text may end a final mid-sentence ("The dentist appointment was pushed." + the rest), so a sentence can be
    two or three adjacent finals. A sentence still has to be in them: nothing else is joined."""
    items = sorted(items, key=lambda h: h[start])
    out = []
    for i, first in enumerate(items):
        run = [first]
        out.append({"text": first["text"], "items": list(run)})
        for nxt in items[i + 1:i + most]:
            prev = run[-1]
            if nxt.get("rtstream_id") != prev.get("rtstream_id") or \
                    nxt[start] - ((prev.get(end) if end else None) or prev[start]) > gap:
                break
            run.append(nxt)
            out.append({"text": " ".join(x["text"] for x in run), "items": list(run)})
    return out


def best_span(sentence: str, items: list[dict], **kw) -> dict | None:
    """The run of adjacent items (:func:`spans`) with the most of the sentence's words (the shortest of equals)."""
    return max(spans(items, **kw), key=lambda sp: (overlap(sentence, sp["text"]), -len(sp["items"])), default=None)


def secret_leaks(cap, text: str) -> list[str]:
    """Pieces of the secret (any 10 characters of its random part) found in ``text``."""
    body = cap.secret[len("sk-live-"):]
    return [body[i:i + 10] for i in range(len(body) - 9) if body[i:i + 10] in text]


def image_text(b64: str) -> tuple[tuple[int, int], str]:
    """The returned image, decoded, and read again with vdbnb's OCR: what an agent with vision would see."""
    from PIL import Image

    from vdbnb.ai.ocr import ScreenReader
    img = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    return img.size, "\n".join(ln.text for ln in ScreenReader().read(np.asarray(img)))


def query_for(sentence: str) -> str:
    """The content words of a sentence (what a user would type), not the sentence itself."""
    stop = {"the", "our", "is", "was", "will", "to", "for", "on", "at", "in", "by", "of", "moves", "scheduled",
            "pushed", "happen", "booked", "next", "near"}
    return " ".join(w for w in re.findall(r"[a-z]+", sentence.lower()) if w not in stop)


async def exercise(c, cap) -> dict:
    """The read tools an agent uses, with the checks every transport must pass. Returns every result."""
    out = {}
    tools = (await c.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    for t in tools:
        assert t.description and t.input_schema.get("type") == "object" and t.output_schema, t.name
    # search: each spoken sentence is found by its content words, with a clip that plays
    for s, t0 in zip(cap.said, cap.t_said):
        r = await c.call_tool("search", {"query": query_for(s), "since": "30m", "limit": 5})
        assert not r.is_error, r.content[0].text
        hits = r.structured_content["hits"]
        span = best_span(s, hits)
        assert span and overlap(s, span["text"]) >= 0.6, (s, [h["text"] for h in hits])
        best = span["items"][0]
        assert all(h["channel"] == "mic" for h in span["items"]) and abs(best["start"] - t0) < 8, span
        clip = httpx.get(best["clip_url"], timeout=60)
        assert clip.status_code == 200 and clip.content[4:8] == b"ftyp", clip.status_code
        out[f"search {s}"] = r
    # recent_context: both sentences and the window, in time order
    r = await c.call_tool("recent_context", {"minutes": 15})
    assert not r.is_error, r.content[0].text
    items = r.structured_content["items"]
    assert [it["t"] for it in items] == sorted(it["t"] for it in items)
    said = [it for it in items if it["kind"] == "transcript"]
    for s in cap.said:
        span = best_span(s, said, start="t", end=None, gap=6.0)
        assert span and overlap(s, span["text"]) >= 0.6, (s, [it["text"] for it in said])
        lines = r.content[0].text.splitlines()  # a sentence split in two finals: two adjacent lines
        assert any(overlap(s, " ".join(lines[i:i + k])) >= 0.6 for i in range(len(lines)) for k in (1, 2, 3)), \
            "the text form has it too"
    assert any(it["kind"] == "visual_index" and it.get("window_title") == cap.title for it in items)
    out["recent_context"] = r
    # screen_now: the window's text in the OCR text and in the image; the secret blacked out
    r = await c.call_tool("screen_now", {})
    assert not r.is_error, r.content[0].text
    sc = r.structured_content
    assert ocr_has(cap.shown, sc["ocr_text"]), sc["ocr_text"]
    assert sc["window_title"] == cap.title and sc["live"] is True
    assert "api_key" in sc["redacted"] and "STRIPE_KEY=[api_key redacted]" in sc["ocr_text"], "the secret's line was read"
    img = [b for b in r.content if b.type == "image"]
    assert len(img) == 1 and img[0].mime_type == "image/png"
    size, seen = image_text(img[0].data)
    assert size == (sc["width"], sc["height"])
    assert ocr_has(cap.shown, seen), seen
    assert not secret_leaks(cap, seen), "the secret's line is blacked out in the image"
    assert "STRIPE_KEY" not in seen, "the whole line that held the secret is blacked out"
    # the excluded window was on the same display: the recorder blacked it out before encoding
    for shown_text in (sc["ocr_text"], seen):
        assert not ocr_has(cap.private_text, shown_text, 0.6) and "Private Notes" not in shown_text, shown_text
    out["screen_now"] = r
    # sessions
    r = await c.call_tool("list_sessions", {})
    assert any(s["session_id"] == cap.session_id and s["status"] == "active" for s in r.structured_content["sessions"])
    out["list_sessions"] = r
    r = await c.call_tool("session_summary", {"session_id": cap.session_id})
    assert not r.is_error, r.content[0].text
    assert cap.title in r.structured_content["window_titles"]
    assert all(overlap(s, r.structured_content["transcript"]) >= 0.6 for s in cap.said)
    assert r.structured_content["counts"].get("alert", 0) >= 1, "the secret on screen raised an alert"
    out["session_summary"] = r
    # control is off by default: refused, clearly
    r = await c.call_tool("start_capture", {})
    assert r.is_error and "--allow-control" in r.content[0].text
    out["start_capture"] = r
    # resources: the session's transcript and events
    text = (await c.read_resource(f"vdbnb://sessions/{cap.session_id}/transcript")).contents[0].text
    assert all(overlap(s, text) >= 0.6 for s in cap.said)
    ev = json.loads((await c.read_resource(f"vdbnb://sessions/{cap.session_id}/events")).contents[0].text)
    out["resources"] = text + json.dumps(ev)
    return out


def assert_no_secret(cap, results: dict) -> None:
    """Neither the secret nor anything of the excluded window (text, title) is in any result."""
    for name, r in results.items():
        blob = r if isinstance(r, str) else dump(r)
        assert cap.secret not in blob and not secret_leaks(cap, blob), f"the secret leaked in {name}"
        assert cap.private_title not in blob and cap.private_text.split()[0] not in blob, \
            f"the excluded window leaked in {name}"


def agent_events(cap) -> list[dict]:
    r = httpx.get(cap.server.url + "/collection/default/events", headers=cap.server.headers(),
                  params={"channel": "agent", "limit": 10000}, timeout=30)
    return r.json()["data"]["events"]


def test_stdio(capture):
    from mcp import Client
    cap = capture
    before = len(agent_events(cap))

    async def main():
        async with Client(stdio_params(cap.server), read_timeout_seconds=120) as c:
            return await exercise(c, cap)
    results = asyncio.run(main())
    assert_no_secret(cap, results)
    logged = agent_events(cap)[before:]
    calls = [e["data"]["tool"] for e in logged]
    assert calls.count("search") == len(cap.said) and "screen_now" in calls and "start_capture" in calls
    assert all(e["data"]["caller"]["transport"] == "stdio" for e in logged)
    refused = next(e for e in logged if e["data"]["tool"] == "start_capture")
    assert refused["data"]["outcome"] == "refused" and refused["emitted_at"] >= refused["start"]
    assert all(cap.secret not in json.dumps(e) for e in logged)


def test_http(capture, tmp_path):
    cap = capture
    srv = cap.server
    mcp = HttpMcp(srv, log_path=tmp_path / "mcp-http.log")
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        client_token = httpx.post(srv.url + "/capture/session/token", json={}, headers=srv.headers()).json()["data"]["token"]
        for creds in ({}, {"authorization": "Bearer sk-not-a-key"}, {"x-access-token": "at-not-a-token"},
                      {"authorization": f"Bearer {client_token}"}):  # a recorder's token is not an agent's
            r = httpx.post(mcp.url, json=body, headers={**accept, **creds}, timeout=30)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), (creds, r.text)
        agent = httpx.post(srv.url + "/agent/token", json={"name": "test-agent"}, headers=srv.headers(),
                           timeout=10).json()["data"]
        assert agent["token"].startswith("at-") and agent["scope"] == "agent"

        async def main():
            async with http_client(mcp.url, agent["token"]) as c:
                out = await exercise(c, cap)
            async with http_client(mcp.url, srv.api_key, header="x-access-token") as c:
                r = await c.call_tool("list_sessions", {})
                assert not r.is_error
            try:
                async with http_client(mcp.url, None) as c:
                    await c.list_tools()
                out["no credentials"] = "connected"
            except Exception as e:  # the SDK's client fails to connect without credentials (401 above)
                out["no credentials"] = repr(e)
            return out
        results = asyncio.run(main())
        assert "MCPError" in results.pop("no credentials"), "the SDK's client cannot connect without credentials"
        assert_no_secret(cap, results)
        logged = [e for e in agent_events(cap) if e["data"]["caller"].get("transport") == "http"]
        creds = {e["data"]["caller"]["credential"] for e in logged}
        assert f"agent_token:{agent['token_id']}" in creds, creds
        assert all(c == f"agent_token:{agent['token_id']}" or c.startswith("api_key:sk-") for c in creds), creds
        assert any(e["data"]["caller"]["credential"] == f"agent_token:{agent['token_id']}" for e in logged)
    finally:
        mcp.stop()
    assert mcp.proc.returncode is not None


def test_subscription_follows_the_capture(capture):
    """A client subscribed to the live transcript hears that it changed when new speech is transcribed, and
    reads it there (protocol 2026-07-28: subscriptions/listen)."""
    from mcp import Client
    from mcp.client.subscriptions import ResourceUpdated

    from rig.tutorial import say
    cap = capture
    sentence = cap.spare[0]
    uri = "vdbnb://live/transcript"

    async def main():
        async with Client(stdio_params(cap.server), read_timeout_seconds=120) as c:
            async with c.listen(resource_subscriptions=[uri]) as sub:
                await asyncio.to_thread(say, sentence)
                deadline = asyncio.get_running_loop().time() + 60
                async for event in sub:
                    assert isinstance(event, ResourceUpdated) and event.uri == uri
                    text = (await c.read_resource(uri)).contents[0].text
                    if overlap(sentence, text) >= 0.6:
                        return text
                    assert asyncio.get_running_loop().time() < deadline, text
    text = asyncio.run(asyncio.wait_for(main(), 120))
    assert cap.secret not in text
