"""Driving `vdbnb mcp` with the official `mcp` SDK's own client, over stdio and streamable HTTP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import Any

import httpx

from testkit.server import free_port


def stdio_params(server, *extra: str, key: str | None = None):
    """`vdbnb mcp` as an MCP host launches it: a subprocess on stdio, pointed at ``server``."""
    from mcp import StdioServerParameters
    env = {**os.environ, "VDBNB_URL": server.url, "VDBNB_API_KEY": key or server.api_key}
    return StdioServerParameters(command=sys.executable, args=["-m", "vdbnb", "mcp", *extra], env=env)


@asynccontextmanager
async def http_client(url: str, credential: str | None, header: str = "authorization"):
    """The SDK's client over streamable HTTP, sending ``credential`` (Bearer, or as x-access-token)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    headers = {}
    if credential:
        headers = {"authorization": f"Bearer {credential}"} if header == "authorization" else {header: credential}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as hc:
        async with Client(streamable_http_client(url, http_client=hc), read_timeout_seconds=120) as c:
            yield c


class HttpMcp:
    """`vdbnb mcp --http` in its own process on a free port (stopped by pid)."""

    def __init__(self, server, *extra: str, log_path=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "vdbnb", "mcp", "--http", "--port", str(self.port), *extra],
                                     env={**os.environ, "VDBNB_URL": server.url, "VDBNB_API_KEY": server.api_key},
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, "vdbnb mcp --http exited"
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("vdbnb mcp --http did not answer")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def ocr_has(expected: str, text: str, ratio: float = 0.9) -> bool:
    """Whether OCR ``text`` has a line reading ``expected``, allowing OCR's one-character slips (O/0, l/1):
    some stretch of a line, as long as ``expected``, at least ``ratio`` similar to it (difflib)."""
    import difflib
    n = len(expected)
    return any(difflib.SequenceMatcher(None, expected, line[i:i + n], autojunk=False).ratio() >= ratio
               for line in text.splitlines() for i in range(max(1, len(line) - n + 1)))


def dump(result) -> str:
    """Everything a tool result carries, as one string (text blocks, structured content, image data)."""
    parts: list[Any] = []
    for c in result.content:
        parts.append(getattr(c, "text", None) or getattr(c, "data", None) or getattr(c, "uri", None))
    parts.append(json.dumps(result.structured_content or {}))
    return "\n".join(str(p) for p in parts)
