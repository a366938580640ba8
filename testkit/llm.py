"""A fake of something outside this machine: an OpenAI-compatible LLM endpoint (``RecordingLLM``) speaking the
real wire format, recording what would have left the machine."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class RecordingLLM:
    """A local OpenAI-compatible endpoint (POST /v1/chat/completions) that records every request (its raw
    body, parsed JSON and arrival time) and answers with a short fixed summary. Outside this machine such an
    endpoint is a remote model: this is what would leave."""

    def __init__(self, reply: str = "the user is working in a terminal"):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    outer.requests.append({"t": time.time(), "path": self.path, "raw": raw.decode(),
                                           "json": json.loads(raw)})
                body = json.dumps({"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                                   "model": "test", "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                       "role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def env(self) -> dict:
        return {"VDBNB_LLM_URL": self.url, "VDBNB_LLM_MODEL": "test-vlm"}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def texts(self) -> list[tuple[float, str]]:
        """(arrival time, every text part of the request's messages joined)."""
        out = []
        with self.lock:
            reqs = list(self.requests)
        for r in reqs:
            parts = []
            for m in r["json"].get("messages", []):
                c = m.get("content")
                parts += [c] if isinstance(c, str) else [p.get("text", "") for p in c if p.get("type") == "text"]
            out.append((r["t"], "\n".join(parts)))
        return out

    def images(self) -> list[np.ndarray]:
        """Every image sent (data: URLs decoded to RGB arrays)."""
        import base64
        import io

        from PIL import Image
        out = []
        with self.lock:
            reqs = list(self.requests)
        for r in reqs:
            for m in r["json"].get("messages", []):
                c = m.get("content")
                for p in c if isinstance(c, list) else []:
                    if p.get("type") == "image_url":
                        b64 = p["image_url"]["url"].split(",", 1)[1]
                        out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")))
        return out

