"""Connect a CapturePanel to vdbnb's recorder and server.

- :class:`RecorderSource` — a :class:`~vdbnb.widgets.sources.PreviewSource` over ``SyncCaptureClient`` (the
  recorder process: previews, recording, pause/resume) and a ``Connection`` (creates the capture session,
  mints the client token, starts the transcript / visual index once the session is active).
- :class:`ConnectionEvents` — an :class:`~vdbnb.widgets.sources.EventSource` over ``Connection.listen`` (the
  server websocket on a background thread).
- :func:`recorder_sources` — both, for ``CapturePanel()``; :func:`default_sources` falls back to the in-kernel
  local preview (with the reason) when no server or recorder can be reached.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from vdbnb import events as E
from vdbnb.widgets.sources import Listeners

logger = logging.getLogger(__name__)


def _chan_dict(c: Any) -> dict:
    info = dict(getattr(c, "info", {}) or {})
    cid = c.id
    cat = E.category_of(cid, c.type)
    return {"channel_id": cid, "type": c.type, "name": c.name, "category": cat,
            "is_default": bool(getattr(c, "is_default", False)), "alias": bool(info.get("alias")),
            "source": info.get("source")}


def pick_channels(chans: list[dict]) -> tuple[list[dict], list[str]]:
    """Channels to show (aliases like ``mic:default`` hide the device they point at) and the default ticks."""
    alias_sources = {(c["category"], c["source"]) for c in chans if c["alias"] and c["source"]}
    shown = [c for c in chans if c["alias"] or c["type"] == "video" or (c["category"], c["source"]) not in alias_sources]
    ticked = [c["channel_id"] for c in shown if c["type"] != E.KERNEL   # the kernel channel is opt-in
              and (c["type"] == "video" or c["alias"] or (c["is_default"] and not any(
                  o["alias"] and o["category"] == c["category"] for o in shown)))]
    return shown, ticked


def start_ai(cap: Any, transcript: bool, visual_prompt: str | None, rtstreams: dict, indexes: list) -> None:
    """What the panel shows, started on an active session as a backend would: transcripts of the audio
    channels, a visual index of the screens when a prompt is given. Fills ``rtstreams`` (category → first
    stream) and ``indexes``."""
    for cat in (E.MIC, E.SYSTEM_AUDIO, E.SCREEN):
        for rts in cap.get_rtstream(cat):
            rtstreams.setdefault(cat, rts)
            if cat != E.SCREEN and transcript:
                rts.start_transcript()
            if cat == E.SCREEN and visual_prompt:
                indexes.append(rts.index_visuals(prompt=visual_prompt))


class RecorderSource:
    """PreviewSource backed by the recorder process; recording goes to the server behind ``conn``."""

    def __init__(self, conn: Any = None, client: Any = None, *, collection_id: str = "default",
                 end_user_id: str = "notebook", transcript: bool = True, visual_prompt: str | None = None,
                 store: bool = True, spool_dir: str | None = None):
        if conn is None:
            from vdbnb.api import connect
            conn = connect()
        self.conn = conn
        self.collection_id = collection_id
        self.end_user_id = end_user_id
        self.transcript = transcript
        self.visual_prompt = visual_prompt
        self.store = store
        self.spool_dir = spool_dir
        self._own_client = client is None
        if client is None:
            from vdbnb.capture import SyncCaptureClient
            client = SyncCaptureClient(conn.generate_client_token(), getattr(conn, "base_url", None))
        self.client = client
        self._listeners = Listeners()
        self._channels: dict[str, Any] = {}
        self._shown: list[dict] | None = None
        self._problems: list[dict] = []
        self.default_selection: list[str] = []
        self.session: Any = None
        self.rtstreams: dict[str, Any] = {}
        self.indexes: list[Any] = []
        self._closed = False
        client.on_event(self._dispatch)

    # ---- PreviewSource
    def list_channels(self) -> list[dict]:
        if self._shown is None:
            chans = self.client.list_channels()
            objs = list(chans.all()) + list(getattr(chans, "kernels", []))
            self._channels = {c.id: c for c in objs}
            self._problems = list(getattr(chans, "problems", []) or [])
            self._shown, self.default_selection = pick_channels([_chan_dict(c) for c in objs])
        return [dict(c) for c in self._shown]

    def problems(self) -> list[dict]:
        """Why devices are missing (``{code, kind, message, hint}``), as the recorder found them."""
        self.list_channels()
        return [dict(p) for p in self._problems]

    def subscribe(self, listener: Callable[[str, dict], None]) -> Callable[[], None]:
        unsubscribe = self._listeners.add(listener)
        for p in self.problems():          # what is missing and why, with what to do, as errors
            listener("error", p)
        return unsubscribe

    def start_preview(self, channels: list[str] | None = None) -> None:
        if channels is not None:   # the kernel channel has nothing to preview
            channels = [c for c in channels if E.category_of(c) != E.KERNEL]
        res = self.client.start_preview(channels)
        for err in (res or {}).get("errors", []) if isinstance(res, dict) else []:
            self._emit("error", err if isinstance(err, dict) else {"message": str(err)})

    def stop_preview(self) -> None:
        if not self._closed:
            self.client.stop_preview()

    def start(self, channels: list[str]) -> Any:
        self.list_channels()
        chans = []
        for cid in channels:
            c = self._channels.get(cid)
            if c is None:
                why = "".join(f"; {p['message']} (what to do: {p.get('hint')})" for p in self._problems)
                raise ValueError(f"unknown channel {cid!r}; pick from {sorted(self._channels)}{why}")
            c.store = self.store
            chans.append(c)
        cap = self.conn.create_capture_session(end_user_id=self.end_user_id, collection_id=self.collection_id)
        opts = {"spoolDir": self.spool_dir} if self.spool_dir else {}
        self.client.start_session(cap.id, chans, **opts)
        self.session = cap
        threading.Thread(target=self._when_active, args=(cap,), name="vdbnb-panel-pipelines", daemon=True).start()
        return cap

    def _when_active(self, cap: Any) -> None:
        """Once the server reports the session active, start what the panel shows (as a backend would)."""
        try:
            self.session = cap.wait_for("active", timeout=30)
            start_ai(self.session, self.transcript, self.visual_prompt, self.rtstreams, self.indexes)
        except Exception as e:  # noqa: BLE001 - surfaced in the panel
            logger.exception("starting pipelines failed")
            self._emit("error", {"code": "PIPELINES", "message": f"could not start transcript/indexing: {e}"})

    def stop(self) -> Any:
        return self.client.stop_session()

    def pause(self, channel_id: str) -> None:
        self.client.pause([channel_id])

    def resume(self, channel_id: str) -> None:
        self.client.resume([channel_id])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._own_client:
            self.client.shutdown()

    # ---- recorder events → panel
    def _emit(self, kind: str, payload: dict) -> None:
        self._listeners.emit(kind, payload)

    def _dispatch(self, ev: Any) -> None:
        self._emit(ev.event, ev.payload)


class ConnectionEvents:
    """EventSource over the server websocket (``Connection.listen``), opened on first subscribe."""

    def __init__(self, conn: Any, collection_id: str = "default"):
        self.conn = conn
        self.collection_id = collection_id
        self._listeners = Listeners(on_empty=self._close_socket)
        self._lock = threading.Lock()
        self._listener: Any = None

    def subscribe(self, listener: Callable[[E.Event], None]) -> Callable[[], None]:
        unsubscribe = self._listeners.add(listener)
        with self._lock:
            if self._listener is None:
                self._listener = self.conn.listen(self._listeners.emit, collection_id=self.collection_id)
        return unsubscribe

    def _close_socket(self) -> None:
        with self._lock:
            if self._listener is not None and not len(self._listeners):
                self._listener.stop()
                self._listener = None


def recorder_sources(conn: Any = None, **kw: Any) -> tuple[RecorderSource, ConnectionEvents]:
    if conn is None:
        from vdbnb.api import connect
        conn = connect()
    return RecorderSource(conn, **kw), ConnectionEvents(conn)


def display_problem(settings: Any = None) -> str | None:
    """Why the kernel cannot capture its own screen (None if it can): the recorder's own device discovery
    (a Wayland session, no DISPLAY, a display that does not answer, no screen at all)."""
    from vdbnb.recorder.devices import displays_and_problem
    if settings is None:
        from vdbnb.config import Settings
        settings = Settings.from_env()
    displays, problem = displays_and_problem(settings)
    if problem:
        return problem["message"]
    return None if displays else "no screen to capture"


def default_sources() -> tuple[Any, Any, str | None]:
    """(preview source, event source, why-fallback). With no usable display for the kernel: the browser
    records (:mod:`vdbnb.widgets.browser_source`). Else the recorder + server when reachable, else a local
    preview."""
    t0 = time.time()
    why = display_problem()
    if why is not None:
        from vdbnb.widgets.browser_source import browser_sources
        logger.info("CapturePanel: %s; the browser records", why)
        src, evs = browser_sources()
        return src, evs, None
    try:
        src, evs = recorder_sources()
        src.list_channels()
        return src, evs, None
    except Exception as e:  # noqa: BLE001
        from vdbnb.widgets._local_preview import LocalPreviewSource
        logger.warning("CapturePanel: recorder/server unavailable after %.1fs (%s); local preview only",
                       time.time() - t0, e)
        return LocalPreviewSource(), None, f"{type(e).__name__}: {e}"
