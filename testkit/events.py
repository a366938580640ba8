"""Every message of a server's collection event websocket, recorded on a thread (``WsRecorder``)."""
from __future__ import annotations

import json
import threading
import time


class WsRecorder:
    """Every message of the collection's event websocket (all channels), on a thread."""

    def __init__(self, server):
        import httpx
        import websockets.sync.client as wsc
        url = httpx.get(f"{server.url}/collection/default/websocket", headers=server.headers()).json()["data"][
            "websocket_url"]
        self._cm = wsc.connect(url + "&all=1")
        self.conn = self._cm.__enter__()
        self.msgs: list[dict] = []
        self.connection_id = json.loads(self.conn.recv(10))["connection_id"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for m in self.conn:
                self.msgs.append({"t": time.time(), **json.loads(m)})
        except Exception:
            pass

    def close(self):
        self._cm.__exit__(None, None, None)
