"""A TCP proxy on 127.0.0.1 that a test can cut and restore: the "network link" between the recorder and the
server. It forwards raw bytes, so it carries HTTP (R1/R3) and the ingest websocket alike.

``cut()`` models a link that goes away:
  * every open connection stops forwarding at once (bytes in flight are dropped, not buffered) and is then
    reset (RST), as a peer sees it when its keepalive/ping gives up;
  * new connections are accepted and black-holed: nothing is forwarded, nothing is answered, they hang until
    the client times out (what a connect through a dead route looks like once the SYN is answered by a local
    middlebox) and are reset on ``restore()``.
``cut(acks_first=s)`` first drops only the server→client direction for ``s`` seconds: fragments still reach
the server and are stored, their acks are lost — the recorder must not lose them and the server must not
store them twice (the recorder learns the server's high-water marks from the hello of its next connection
and resends only what is beyond them; anything resent that the server has is acked as a duplicate).

Counters: connections, bytes each way, ``dropped_acks`` (ingest acks lost in a cut) and ``dup_acks`` —
ingest acks with ``"duplicate": true`` seen in the server→client stream (the websocket is uncompressed and
server frames are unmasked, so they are plain JSON).
"""
from __future__ import annotations

import re
import socket
import struct
import threading
import time

DUP_RE = re.compile(rb'"duplicate"\s*:\s*true')
ACK_RE = re.compile(rb'"type"\s*:\s*"ack"')


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    def __init__(self, proxy: "TcpProxy", client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.dead = threading.Event()
        self.held = False            # black-holed (accepted during a cut)
        self.tail = b""              # last bytes server→client, to find dup acks across reads

    def start(self) -> None:
        p = self.proxy
        if p.is_cut:
            self.held = True         # hang it: read and drop, never connect upstream
            threading.Thread(target=self._sink, daemon=True).start()
            return
        try:
            self.upstream = socket.create_connection(("127.0.0.1", p.target_port), timeout=5)
            self.upstream.settimeout(None)
        except OSError:
            _rst(self.client)
            return
        for src, dst, up in ((self.client, self.upstream, True), (self.upstream, self.client, False)):
            threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _sink(self) -> None:
        try:
            while not self.dead.is_set():
                if not self.client.recv(65536):
                    break
        except OSError:
            pass
        self.kill()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        p = self.proxy
        try:
            while not self.dead.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if p.is_cut or (not up and p.acks_dropped):
                    if not up:
                        with p.lock:
                            p.dropped_acks += len(ACK_RE.findall(data))
                    continue        # the link is down: bytes vanish
                if not up:
                    buf = self.tail + data
                    n = len(DUP_RE.findall(buf)) - len(DUP_RE.findall(self.tail))
                    if n:
                        with p.lock:
                            p.dup_acks += n
                    self.tail = buf[-32:]
                dst.sendall(data)
                with p.lock:
                    p.bytes[up] += len(data)
        except OSError:
            pass
        self.kill()

    def kill(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        _rst(self.client)
        if self.upstream is not None:
            _rst(self.upstream)
        with self.proxy.lock:
            self.proxy.conns.discard(self)


class TcpProxy:
    def __init__(self, target_port: int, port: int = 0):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.conns: set[_Conn] = set()
        self.is_cut = False
        self.acks_dropped = False
        self.accepted = 0
        self.held = 0
        self.dup_acks = 0
        self.dropped_acks = 0
        self.bytes = {True: 0, False: 0}   # True: client→server
        self.cuts: list[tuple[float, float | None]] = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TcpProxy":
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                break
            conn = _Conn(self, c)
            with self.lock:
                self.accepted += 1
                self.held += self.is_cut
                self.conns.add(conn)
            conn.start()

    def cut(self, acks_first: float = 0.0) -> None:
        if acks_first:
            self.acks_dropped = True
            time.sleep(acks_first)
        self.is_cut = True
        self.cuts.append((time.time(), None))
        with self.lock:
            live = [c for c in self.conns if not c.held]
        for c in live:
            c.kill()

    def restore(self) -> None:
        with self.lock:
            held = [c for c in self.conns if c.held]
        self.is_cut = False
        self.acks_dropped = False
        for c in held:
            c.kill()
        if self.cuts and self.cuts[-1][1] is None:
            self.cuts[-1] = (self.cuts[-1][0], time.time())

    def close(self) -> None:
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.kill()
