"""X11 window facts for the recorder: the active window (title, app) and visible windows' geometry
(for privacy masks). Uses python-xlib; one connection, used from one thread only (the tracker)."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass


@dataclass
class Win:
    wid: int
    title: str
    app: str
    x: int
    y: int
    w: int
    h: int


class WindowTracker:
    """Polls X11 at ``hz`` on its own thread; ``snapshot()`` returns (active Win|None, [visible Win]).

    Without python-xlib or an X display it stays empty (title/app become None)."""

    def __init__(self, hz: float = 2.0):
        self.hz = hz
        self._lock = threading.Lock()
        self._active: Win | None = None
        self._wins: list[Win] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self._users = 0
        self.ready = threading.Event()   # set after the first successful poll (or a permanent failure)

    def acquire(self):
        with self._lock:
            self._users += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="x11-tracker", daemon=True)
                self._thread.start()

    def release(self):
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                self._stop.set()

    def snapshot(self) -> tuple[Win | None, list[Win]]:
        with self._lock:
            return self._active, list(self._wins)

    def refresh_now(self, timeout: float = 1.0):
        """Wait until the tracker polled once more (used when privacy rules change)."""
        t = time.time()
        self._polled = False
        while not getattr(self, "_polled", True) and time.time() - t < timeout:
            time.sleep(0.01)

    def _run(self):
        try:
            from Xlib import X, display  # noqa: F401
            from Xlib.error import XError  # noqa: F401
        except ImportError:
            self.error = "python-xlib not installed: window titles and window exclusion are unavailable"
            self.ready.set()
            return
        try:
            d = display.Display()  # Xlib opens $DISPLAY (passed through, see vdbnb.config)
        except Exception as e:  # noqa: BLE001
            self.error = f"cannot open X display: {e}"
            self.ready.set()
            return
        root = d.screen().root
        A = {n: d.intern_atom(n) for n in ("_NET_ACTIVE_WINDOW", "_NET_CLIENT_LIST", "_NET_WM_NAME",
                                           "UTF8_STRING", "_NET_WM_PID", "_NET_WM_STATE",
                                           "_NET_WM_STATE_HIDDEN")}
        self.ok = False
        while not self._stop.is_set():
            try:
                active = None
                prop = root.get_full_property(A["_NET_ACTIVE_WINDOW"], X.AnyPropertyType)
                aid = int(prop.value[0]) if prop and len(prop.value) else 0
                cl = root.get_full_property(A["_NET_CLIENT_LIST"], X.AnyPropertyType)
                ids = [int(v) for v in cl.value] if cl else []
                wins = []
                for wid in ids:
                    try:
                        w = d.create_resource_object("window", wid)
                        attrs = w.get_attributes()
                        if attrs.map_state != X.IsViewable:
                            continue
                        st = w.get_full_property(A["_NET_WM_STATE"], X.AnyPropertyType)
                        if st and A["_NET_WM_STATE_HIDDEN"] in list(st.value):
                            continue
                        geo = w.get_geometry()
                        pos = w.translate_coords(root, 0, 0)
                        title = _title(w, A)
                        app = _app(w, A)
                        win = Win(wid, title, app, -pos.x, -pos.y, geo.width, geo.height)
                        wins.append(win)
                        if wid == aid:
                            active = win
                    except XError:
                        continue
                if active is None and aid:
                    try:
                        w = d.create_resource_object("window", aid)
                        active = Win(aid, _title(w, A), _app(w, A), 0, 0, 0, 0)
                    except XError:
                        pass
                with self._lock:
                    self._active, self._wins = active, wins
                self._polled = True
                self.ok = True
                self.ready.set()
            except Exception as e:  # noqa: BLE001 - keep polling; report the last problem
                self.error = f"x11 poll failed: {e}"
            self._stop.wait(1.0 / self.hz)
        self.ready.clear()
        d.close()


def _title(w, A) -> str:
    p = w.get_full_property(A["_NET_WM_NAME"], A["UTF8_STRING"])
    if p and p.value:
        v = p.value
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    n = w.get_wm_name()
    if isinstance(n, bytes):
        n = n.decode("latin-1", "replace")
    return n or ""


def _app(w, A) -> str:
    try:
        cls = w.get_wm_class()
        if cls:
            return cls[1] or cls[0]
    except Exception:  # noqa: BLE001
        pass
    p = w.get_full_property(A["_NET_WM_PID"], 0)
    if p and len(p.value):
        try:
            with open(f"/proc/{int(p.value[0])}/comm") as f:
                return f.read().strip()
        except OSError:
            pass
    return ""


def matching_windows(wins: list[Win], patterns: list[re.Pattern]) -> list[Win]:
    return [w for w in wins if any(p.search(w.title or "") for p in patterns)]
