"""A real webhook receiver on 127.0.0.1 that records every POST."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """A real HTTP server that records every POST (headers + body). ``fail_every`` answers 500 to some."""

    def __init__(self, port: int = 0, fail_pattern=None):
        self.received: list[dict] = []
        self.lock = threading.Lock()
        self.fail_pattern = fail_pattern  # callable(n) -> bool: True = answer 500
        self.count = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.count += 1
                    fail = outer.fail_pattern(outer.count) if outer.fail_pattern else False
                    if not fail:
                        outer.received.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                               "body": body.decode(), "json": json.loads(body)})
                self.send_response(500 if fail else 200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"received": true}')

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self) -> list[dict]:
        with self.lock:
            return [r["json"] for r in self.received]

    def wait_for(self, pred, timeout: float = 20.0) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            time.sleep(0.05)
        raise AssertionError(f"webhooks not received in {timeout}s; got {[e.get('event') for e in self.events()]}")
