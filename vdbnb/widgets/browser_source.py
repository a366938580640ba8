"""The browser as the recorder: ``CapturePanel(source="browser")``.

The kernel often runs where no screen is (JupyterHub, a container, a remote server), and many desktops are not
X11; the browser that shows the notebook can capture screens, windows, tabs and the microphone with the user's
consent. Here the kernel only provisions and watches; the page records (``js/src/browser/``):

- the kernel creates the capture session and mints a client token (the API key never reaches the page), and
  hands both to the panel's front end in the ``recorder`` trait, with the URLs to reach the server: directly
  (``api_url``) or through the Jupyter server (``proxy_path``, :mod:`vdbnb.widgets.ingest_proxy`);
- the page asks the browser for the screens and microphone (its own picker), encodes (WebCodecs H.264 High /
  VP9 / VP8 + Opus), and speaks the native recorder's protocol (docs/ingest.md): R1 with the client token,
  numbered fragments acknowledged once stored, kept in IndexedDB until then and resent after reconnects, R3;
- the kernel watches the session on the server (so a busy kernel, or a stop from the browser's own "Stop
  sharing" bar, still shows in ``panel.state``), starts the transcript / visual index once it is active, and
  creates the next session when the page asks for one.

Messages between this source and the page (through the panel's comm):
page → kernel ``{"type": "browser", "event": "shared" | "started" | "stopped" | "levels" | "alive" | "error" |
"need-session" | "need-token", ...}``; kernel → page ``{"type": "browser", "cmd": "start" | "stop" | "pause" |
"resume", ...}``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from vdbnb import events as E
from vdbnb.errors import CaptureError
from vdbnb.widgets.adapters import start_ai
from vdbnb.widgets.sources import Listeners

logger = logging.getLogger(__name__)

RECORDING = ("starting", "active", "stopping")
ENDED = ("stopped", "exported", "failed")
# what the panel shows before the browser is asked: the browser's picker decides what display:N really is
ASK = [
    {"channel_id": "display:1", "type": "video", "name": "a screen, window or tab (the browser asks)",
     "category": E.SCREEN, "browser": True},
    {"channel_id": "mic:default", "type": "audio", "name": "microphone (the browser asks)", "category": E.MIC,
     "browser": True},
    {"channel_id": "system_audio:default", "type": "audio",
     "name": "tab / system audio (where the browser offers it)", "category": E.SYSTEM_AUDIO, "browser": True},
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# the Jupyter server extension's route (ingest_proxy.PREFIX; not imported: the kernel may lack jupyter_server)
PROXY_PREFIX = "vdbnb/ingest"


def _error(code: str, message: str) -> CaptureError:
    e = CaptureError(message)
    e.code = code  # the panel shows the hint for this code
    return e


class BrowserSource:
    """A :class:`~vdbnb.widgets.sources.PreviewSource` whose recorder is the page showing the panel.

    ``fps`` — video frames per second (unchanged frames are not encoded; a heartbeat keyframe every 60 s);
    ``video_codec`` — ``None`` (H.264 High, else VP9, else VP8) or one of ``"h264"``, ``"vp9"``, ``"vp8"``;
    ``browser_url`` — the server's URL as the *browser* reaches it, if not the kernel's (a reverse proxy);
    ``reach`` — ``"auto"`` (direct if the page can reach the server, else through the Jupyter server),
    ``"direct"`` or ``"proxy"``; ``privacy`` — ``{"exclude_rects": [...]}``, rectangles blacked out in the
    page before encoding (``{x, y, w, h, display?}`` in the shared surface's pixels; without ``display`` on
    every shared surface); ``token_ttl`` — lifetime of each client token (the page asks for a fresh one).
    """

    in_browser = True

    def __init__(self, conn: Any = None, *, collection_id: str = "default", end_user_id: str = "notebook",
                 transcript: bool = True, visual_prompt: str | None = None, fps: float = 2.0,
                 video_codec: str | None = None, browser_url: str | None = None, reach: str = "auto",
                 privacy: dict | None = None, token_ttl: int = 4 * 3600, poll_s: float = 0.5):
        if conn is None:
            from vdbnb.api import connect
            conn = connect()
        if reach not in ("auto", "direct", "proxy"):
            raise ValueError(f"reach must be 'auto', 'direct' or 'proxy', not {reach!r}")
        if video_codec not in (None, "h264", "vp9", "vp8"):
            raise ValueError(f"video_codec must be None, 'h264', 'vp9' or 'vp8', not {video_codec!r}")
        privacy = dict(privacy or {})
        if privacy.get("exclude_windows") or privacy.get("excludeWindows"):
            raise ValueError("a browser cannot see other windows' titles, so exclude_windows cannot work here: "
                             "share one window (the browser's picker offers windows and tabs) or black out "
                             "regions with exclude_rects")
        self.conn = conn
        self.collection_id = collection_id
        self.end_user_id = end_user_id
        self.transcript = transcript
        self.visual_prompt = visual_prompt
        self.fps = float(fps)
        self.video_codec = video_codec
        self.browser_url = (browser_url or conn.base_url).rstrip("/")
        self.reach = reach
        self.rects = [self._rect(r) for r in privacy.get("exclude_rects") or privacy.get("excludeRects") or []]
        self.token_ttl = int(token_ttl)
        self.poll_s = poll_s
        self._listeners = Listeners()
        self._send: Callable[[dict], None] | None = None
        self._shown: list[dict] = [dict(c) for c in ASK]
        self.default_selection = [c["channel_id"] for c in ASK]
        self.rtstreams: dict[str, Any] = {}
        self.indexes: list[Any] = []
        self.summary: dict | None = None            # what the page reported at its last stop
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self.session: Any = None                    # the session the page records (or will record) into
        self._token: tuple[str, float] = ("", 0.0)
        self._new_session()
        self._watcher = threading.Thread(target=self._watch, name="vdbnb-browser-session", daemon=True)
        self._watcher.start()

    @staticmethod
    def _rect(r: Any) -> dict:
        if isinstance(r, dict):
            out = {"x": int(r["x"]), "y": int(r["y"]), "w": int(r.get("w", r.get("width"))),
                   "h": int(r.get("h", r.get("height")))}
            if r.get("display"):
                out["display"] = str(r["display"])
            return out
        x, y, w, h = (int(v) for v in list(r)[:4])
        return {"x": x, "y": y, "w": w, "h": h}

    # ------------------------------------------------------------------ the page's configuration
    def _new_session(self) -> None:
        cap = self.conn.create_capture_session(end_user_id=self.end_user_id, collection_id=self.collection_id)
        with self._lock:
            self.session = cap
            self.rtstreams, self.indexes, self.summary = {}, [], None
            self._mint()

    def _mint(self) -> None:
        self._token = (self.conn.generate_client_token(expires_in=self.token_ttl), time.time() + self.token_ttl)

    def browser_config(self) -> dict:
        """The panel's ``recorder`` trait: everything the page needs, and nothing it should not hold."""
        u = urlsplit(self.conn.base_url)
        proxy = f"{PROXY_PREFIX}/{u.port or (443 if u.scheme == 'https' else 80)}" if u.hostname in LOOPBACK \
            else None
        with self._lock:
            token, expires = self._token
            return {"kind": "browser", "session_id": self.session.id, "token": token,
                    "expires_at": round(expires, 3), "api_url": self.browser_url, "proxy_path": proxy,
                    "reach": self.reach, "video": {"fps": self.fps, "codec": self.video_codec, "gop_s": 120.0,
                                                   "fragment_s": 2.0, "heartbeat_s": 60.0},
                    "audio": {"bitrate": 24000, "frame_ms": 60}, "masks": self.rects}

    def attach(self, send: Callable[[dict], None]) -> None:
        """The panel gives its way to the page (custom messages)."""
        self._send = send

    # ------------------------------------------------------------------ PreviewSource
    def list_channels(self) -> list[dict]:
        return [dict(c) for c in self._shown]

    def subscribe(self, listener: Callable[[str, dict], None]) -> Callable[[], None]:
        return self._listeners.add(listener)

    def status(self) -> str:
        return self.session.refresh().status or ""

    def start(self, channels: list[str]) -> Any:
        """Record into :attr:`session`. After a click on the panel's Start the page has already started (R1);
        from code (``panel.start()``) the page is asked to, which works once it shares a screen (a browser
        shares only after a click in the page: press Start, or "Share" first)."""
        st = self.status()
        if st in RECORDING:
            return self.session
        if st in ENDED:
            self._new_session()
            self._emit("config", self.browser_config())
        if self._send is None:
            raise _error("NO_FRONT_END", "the panel is not shown in a browser: display it (run a cell ending "
                                         "with `panel`), then press ● Start in it")
        self._send({"type": "browser", "cmd": "start", "channels": list(channels)})
        deadline = time.time() + 20
        while self.status() not in RECORDING:
            if time.time() > deadline:
                raise _error("BROWSER_NOT_STARTED", "the browser did not start recording: a page may share a "
                             "screen or the microphone only after a click in it — press ● Start in the panel")
            time.sleep(0.25)
        return self.session

    def stop(self) -> dict:
        """Ask the page to stop (it drains its IndexedDB queue, then calls R3) and wait for the server to say
        stopped. If the page does not answer (closed tab), stop the session with the client token."""
        cap = self.session
        if self.status() in RECORDING and self._send is not None:
            self._send({"type": "browser", "cmd": "stop"})
        deadline = time.time() + 90
        while self.status() not in ENDED and time.time() < deadline:
            time.sleep(0.25)
        status = "complete"
        if cap.status not in ENDED:
            import httpx
            token = self._token[0]
            httpx.post(f"{self.conn.base_url}/capture/session/{cap.id}/stop", headers={"x-access-token": token},
                       timeout=30)
            status = "incomplete"
            self._emit("error", {"code": "BROWSER_SILENT", "message": "the page did not confirm the stop in "
                                 "90 s; the session was stopped from the kernel — fragments still in the "
                                 "page's queue are sent when it reconnects (within 5 s of the stop)"})
        summary = dict(self.summary or {})
        if summary.get("unacked"):
            status = "incomplete"
        return {"status": status, "session_id": cap.id, **summary}

    def pause(self, channel_id: str) -> None:
        if self._send is not None:
            self._send({"type": "browser", "cmd": "pause", "channel_id": channel_id})

    def resume(self, channel_id: str) -> None:
        if self._send is not None:
            self._send({"type": "browser", "cmd": "resume", "channel_id": channel_id})

    def close(self) -> None:
        self._closed.set()

    # ------------------------------------------------------------------ from the page
    def on_browser_message(self, msg: dict) -> None:
        ev = msg.get("event")
        if ev == "shared":
            chans = [self._channel(c) for c in msg.get("channels") or []]
            if chans:
                self._shown = chans
                self._emit("channels", {"channels": [dict(c) for c in chans],
                                        "selected": [c["channel_id"] for c in chans]})
        elif ev == "levels":
            for cid, samples in (msg.get("samples") or {}).items():
                for ts, rms, peak in samples:
                    self._emit("audio-level", {"channel_id": cid, "ts": ts, "rms": rms, "peak": peak})
        elif ev == "alive":
            for cid in msg.get("channels") or []:
                self._emit("alive", {"channel_id": cid})
        elif ev == "stopped":
            self.summary = {k: msg.get(k) for k in ("fragments", "acked", "unacked", "bytes", "codec", "video",
                                                   "reconnects", "resent", "link", "pending") if k in msg}
        elif ev == "error":
            self._emit("error", {"code": msg.get("code") or "BROWSER", "message": msg.get("message") or "error",
                                 **({"channel_id": msg["channel_id"]} if msg.get("channel_id") else {})})
        elif ev == "need-session":
            if self.status() in ENDED or msg.get("session_id") != self.session.id:
                if self.status() in ENDED:
                    self._new_session()
            self._emit("config", self.browser_config())
        elif ev == "need-token":
            with self._lock:
                self._mint()
            self._emit("config", self.browser_config())

    @staticmethod
    def _channel(c: dict) -> dict:
        cid = str(c.get("channel_id"))
        kind = "video" if c.get("type") == "video" else "audio"
        return {"channel_id": cid, "type": kind, "name": str(c.get("name") or cid),
                "category": E.category_of(cid, kind), "browser": True}

    # ------------------------------------------------------------------ watching the session
    def _emit(self, kind: str, payload: dict) -> None:
        self._listeners.emit(kind, payload)

    def _watch(self) -> None:
        """Follow the session on the server: the panel learns of a start or stop even while a cell keeps the
        kernel busy (its comm messages wait), and the AI starts once the session is active."""
        current, recording, lost_noted, ai_for = "", False, False, ""
        while not self._closed.wait(self.poll_s):
            cap = self.session
            if cap.id != current:
                current, recording, lost_noted = cap.id, False, False
            try:
                st = cap.refresh().status or ""
            except Exception as e:  # noqa: BLE001 - the server may restart; keep watching
                logger.debug("session poll failed: %s", e)
                continue
            # the server gave up on the page's link (it keeps recording into IndexedDB and resends; the server
            # resumes the session when it is back): not a stop
            lost = st == "stopped" and (cap.error or "").startswith("recorder_lost")
            if st in RECORDING and not recording:
                recording, lost_noted = True, False
                self._emit("recording-started", {"session": cap, "channels": self._recorded(cap)})
            if st == "active" and ai_for != cap.id:
                ai_for = cap.id
                try:
                    start_ai(cap, self.transcript, self.visual_prompt, self.rtstreams, self.indexes)
                except Exception as e:  # noqa: BLE001 - surfaced in the panel
                    logger.exception("starting pipelines failed")
                    self._emit("error", {"code": "PIPELINES", "message": f"could not start transcript/indexing: {e}"})
            if lost and recording and not lost_noted:
                lost_noted = True
                self._emit("error", {"code": "UPLOAD_FAILED", "message": "no link from the browser for a while: "
                                     "it keeps the media and sends it when the link is back"})
            elif st in ENDED and recording and not lost:
                recording = False
                self._emit("recording-complete", {"session_id": cap.id, "status": st})

    @staticmethod
    def _recorded(cap: Any) -> list[str]:
        return [r.source_channel_id for r in cap.rtstreams if r.source_channel_id]


def browser_sources(conn: Any = None, **kw: Any) -> tuple[BrowserSource, Any]:
    """``CapturePanel(source="browser")``: the browser recorder and the server's event stream."""
    from vdbnb.widgets.adapters import ConnectionEvents
    if conn is None:
        from vdbnb.api import connect
        conn = connect()
    return BrowserSource(conn, **kw), ConnectionEvents(conn)
