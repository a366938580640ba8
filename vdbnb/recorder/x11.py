"""X11 window facts for the recorder: the active window (title, app) and the visible windows' frames (for
privacy masks), kept current by X events, not by polling.

One thread owns one Xlib connection. It selects, on the root window, SubstructureNotify (frames created,
mapped, unmapped, moved, resized, restacked, destroyed) and PropertyChange (the client list, the active window),
and on every client window PropertyChange (title, class, state) and StructureNotify. Every event it processes
bumps a version and is logged as (version, window, kind).

A screen grab asks for a **barrier** right after it grabbed: the tracker makes a round trip to the X server
(every event the server generated before it answers is then in the queue), processes those events and
answers with the version, the window list and the events since the version the grab started from. So the
recorder knows the window stack at grab time, or knows that it changed while it grabbed and how
(see :meth:`vdbnb.recorder.screen.Privacy.decide`).

Without python-xlib or an X display the tracker stays empty and says so (``error``): window exclusion then
fails closed (frames are blacked out).
"""
from __future__ import annotations

import collections
import os
import re
import select
import threading
from dataclasses import dataclass

LOG_MAX = 4096  # events kept for barriers; a grab that started before the oldest one is treated as stale


@dataclass(frozen=True)
class Win:
    wid: int      # the client window
    title: str
    app: str
    x: int        # its frame (decorations included) in root coordinates
    y: int
    w: int
    h: int


@dataclass
class Barrier:
    version: int
    active: Win | None
    wins: list[Win]
    events: list[tuple[int, str]] | None   # (client wid or 0, kind) since the asked version; None: log truncated


class WindowTracker:
    """``snapshot()`` -> (active Win | None, [visible Win]); ``state()`` the same with its version;
    ``barrier(since)`` after a grab (see the module docstring). Started by the first ``acquire()``."""

    def __init__(self):
        self._lock = threading.Condition()
        self._active: Win | None = None
        self._wins: list[Win] = []
        self._version = 0
        self._log: collections.deque = collections.deque(maxlen=LOG_MAX)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._users = 0
        self._asked = 0      # barrier requests made
        self._answered = 0   # barrier requests answered
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.error: str | None = None
        self.ok = False
        self.ready = threading.Event()   # set after the first window list (or a permanent failure)
        self.stats = {"events": 0, "rebuilds": 0, "barriers": 0}

    # ------------------------------------------------------------------ users
    def acquire(self):
        with self._lock:
            self._users += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self.ready.clear()
                self._thread = threading.Thread(target=self._run, name="x11-tracker", daemon=True)
                self._thread.start()

    def release(self):
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                self._stop.set()
                self._poke()

    # ------------------------------------------------------------------ reads
    def snapshot(self) -> tuple[Win | None, list[Win]]:
        with self._lock:
            return self._active, list(self._wins)

    def state(self) -> tuple[int, Win | None, list[Win]]:
        with self._lock:
            return self._version, self._active, list(self._wins)

    def barrier(self, since: int, timeout: float = 1.0) -> Barrier | None:
        """After a grab: every X event generated before now is processed; returns the window list and the
        events after version ``since``. None when the tracker cannot answer (not running, X gone, timeout)."""
        with self._lock:
            if not self.ok or self._thread is None or not self._thread.is_alive():
                return None
            self._asked += 1
            ticket = self._asked
        self._poke()
        with self._lock:
            if not self._lock.wait_for(lambda: self._answered >= ticket or not self.ok, timeout) or not self.ok:
                return None
            if self._log and self._log[0][0] > since + 1:
                events = None  # older events were dropped from the log: unknown what happened
            else:
                events = [(w, k) for v, w, k in self._log if v > since]
            return Barrier(self._version, self._active, list(self._wins), events)

    def _poke(self):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # ------------------------------------------------------------------ the X thread
    def _run(self):
        try:
            from Xlib import X, display
        except ImportError:
            self._fail("python-xlib not installed: window titles and window exclusion are unavailable")
            return
        try:
            d = display.Display()  # Xlib opens $DISPLAY (passed through, see vdbnb.config)
        except Exception as e:  # noqa: BLE001
            self._fail(f"cannot open X display: {e}")
            return
        try:
            _Session(self, d, X).run()
        except Exception as e:  # noqa: BLE001 - the X connection broke: fail closed
            self._fail(f"x11 tracker stopped: {e}")
        finally:
            with self._lock:
                self.ok = False  # stopped: no barrier is answered from a list nobody keeps current
                self._lock.notify_all()
            try:
                d.close()
            except Exception:  # noqa: BLE001
                pass

    def _fail(self, msg: str):
        with self._lock:
            self.error = msg
            self.ok = False
            self._lock.notify_all()
        self.ready.set()


class _Session:
    """The tracker's X connection: the event loop, the window model, barrier answers."""

    def __init__(self, tracker: WindowTracker, d, X):
        self.t, self.d, self.X = tracker, d, X
        self.root = d.screen().root
        self.A = {n: d.intern_atom(n) for n in (
            "_NET_ACTIVE_WINDOW", "_NET_CLIENT_LIST", "_NET_CLIENT_LIST_STACKING", "_NET_WM_NAME", "WM_NAME",
            "UTF8_STRING", "_NET_WM_PID", "_NET_WM_STATE", "_NET_WM_STATE_HIDDEN", "WM_CLASS")}
        self.title_atoms = {self.A["_NET_WM_NAME"], self.A["WM_NAME"]}
        self.clients: dict[int, dict] = {}    # client wid -> {frame, title, app, geom, mapped, hidden}
        self.frame_of: dict[int, int] = {}    # frame wid -> client wid
        self.active_id = 0
        self.watched: set[int] = set()
        d.set_error_handler(lambda *a, **k: None)  # windows vanish between an event and a request

    # ---- loop
    def run(self):
        X, t = self.X, self.t
        self.root.change_attributes(event_mask=X.SubstructureNotifyMask | X.PropertyChangeMask)
        self.d.sync()
        self.rebuild()
        self.publish([])
        with t._lock:
            t.ok = True
            t.error = None
        t.ready.set()
        fd = self.d.fileno()
        while not t._stop.is_set():
            if not self.d.pending_events():
                select.select([fd, t._wake_r], [], [], 1.0)
            try:
                while os.read(t._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            with t._lock:
                target = t._asked
            self.drain()
            if target > t._answered:
                self.d.sync()   # round trip: every event generated before the server answered is queued now
                self.drain()
                with t._lock:
                    t._answered = target
                    t.stats["barriers"] += 1
                    t._lock.notify_all()

    def drain(self):
        """Process every queued event; one rebuild at the end if the window set changed."""
        logged: list[tuple[int, str]] = []
        dirty = False
        while self.d.pending_events():
            dirty |= self.handle(self.d.next_event(), logged)
        if dirty:
            before = set(self.clients)
            self.rebuild()
            logged += [(w, "new") for w in set(self.clients) - before]
            logged += [(w, "gone") for w in before - set(self.clients)]
        if logged or dirty:
            self.publish(logged)

    def handle(self, e, logged: list) -> bool:
        """Apply one event to the model; returns True when the window set must be re-read."""
        X, A = self.X, self.A
        self.t.stats["events"] += 1
        kind = e.type
        win = getattr(e, "window", None)
        wid = win.id if win is not None else 0
        if kind == X.PropertyNotify:
            if wid == self.root.id:
                if e.atom == A["_NET_ACTIVE_WINDOW"]:
                    self.read_active()
                    logged.append((0, "active"))
                    return False
                if e.atom in (A["_NET_CLIENT_LIST"], A["_NET_CLIENT_LIST_STACKING"]):
                    logged.append((0, "list"))
                    return True
                return False
            c = self.clients.get(wid)
            if c is None:
                return False
            if e.atom in self.title_atoms:
                title = _title(win, A)
                if title != c["title"]:
                    c["title"] = title
                    logged.append((wid, "title"))
            elif e.atom == A["WM_CLASS"]:
                c["app"] = _app(win, A)
            elif e.atom == A["_NET_WM_STATE"]:
                c["hidden"] = _hidden(win, A)
                logged.append((wid, "map"))
            return False
        if kind == X.ConfigureNotify:
            cid = self.frame_of.get(wid, wid if wid in self.clients else None)
            if cid is None:
                return False
            c = self.clients[cid]
            if c["frame"] == wid:  # the frame (a child of the root): its new place, from the event itself
                bw = e.border_width
                geom = (e.x, e.y, e.width + 2 * bw, e.height + 2 * bw)
            else:                  # the client inside its frame: re-read where the frame is
                geom = self.frame_geom(c["frame"]) or c["geom"]
            if geom != c["geom"]:  # (a restack or the client's own notice of the same move is no change)
                c["geom"] = geom
                logged.append((cid, "geom"))
            return False
        if kind in (X.MapNotify, X.UnmapNotify):
            cid = self.frame_of.get(wid, wid if wid in self.clients else None)
            if cid is None:
                logged.append((0, "map"))
                return True  # a window we do not know yet
            self.clients[cid]["mapped"] = self.viewable(self.clients[cid]["frame"])
            logged.append((cid, "map"))
            return False
        if kind in (X.CreateNotify, X.DestroyNotify, X.ReparentNotify):
            logged.append((self.frame_of.get(wid, wid), "list"))
            return True
        return False

    # ---- the model
    def rebuild(self):
        """Re-read the client list, each client's frame, geometry, title, app and state."""
        from Xlib.error import XError
        X, A = self.X, self.A
        self.t.stats["rebuilds"] += 1
        prop = self.root.get_full_property(A["_NET_CLIENT_LIST"], X.AnyPropertyType)
        if prop is not None:
            ids = [int(v) for v in prop.value]
        else:  # no EWMH window manager: the root's children are the windows
            ids = [w.id for w in self.root.query_tree().children]
        clients, frames = {}, {}
        for cid in ids:
            try:
                w = self.d.create_resource_object("window", cid)
                if cid not in self.watched:
                    w.change_attributes(event_mask=X.PropertyChangeMask | X.StructureNotifyMask)
                    self.watched.add(cid)
                frame = self.frame_window(w)
                geom = self.frame_geom(frame)
                if geom is None:
                    continue
                clients[cid] = {"frame": frame, "title": _title(w, A), "app": _app(w, A), "geom": geom,
                                "mapped": self.viewable(frame) and self.viewable(cid),
                                "hidden": _hidden(w, A)}
                frames[frame] = cid
            except XError:
                continue
        self.watched &= set(clients)
        self.clients, self.frame_of = clients, frames
        self.read_active()

    def frame_window(self, w) -> int:
        """The ancestor of ``w`` that is a child of the root (its window manager frame, or itself)."""
        cur = w
        for _ in range(8):
            tree = cur.query_tree()
            if tree.parent is None or tree.parent.id == self.root.id or tree.parent.id == 0:
                return cur.id
            cur = tree.parent
        return cur.id

    def frame_geom(self, frame: int):
        from Xlib.error import XError
        try:
            fw = self.d.create_resource_object("window", frame)
            g = fw.get_geometry()
            pos = fw.translate_coords(self.root, 0, 0)
            return (-pos.x - g.border_width, -pos.y - g.border_width, g.width + 2 * g.border_width,
                    g.height + 2 * g.border_width)
        except XError:
            return None

    def viewable(self, wid: int) -> bool:
        from Xlib.error import XError
        try:
            return self.d.create_resource_object("window", wid).get_attributes().map_state == self.X.IsViewable
        except XError:
            return False

    def read_active(self):
        from Xlib.error import XError
        try:
            prop = self.root.get_full_property(self.A["_NET_ACTIVE_WINDOW"], self.X.AnyPropertyType)
            self.active_id = int(prop.value[0]) if prop and len(prop.value) else 0
        except XError:
            self.active_id = 0

    def publish(self, logged: list[tuple[int, str]]):
        wins, active = [], None
        for cid, c in self.clients.items():
            x, y, w, h = c["geom"]
            win = Win(cid, c["title"], c["app"], x, y, w, h)
            if cid == self.active_id:
                active = win
            if c["mapped"] and not c["hidden"]:
                wins.append(win)
        if active is None and self.active_id:
            active = self._unmanaged_active()
        t = self.t
        with t._lock:
            for wid, kind in logged or [(0, "sync")]:
                t._version += 1
                t._log.append((t._version, wid, kind))
            t._active, t._wins = active, wins
            t._lock.notify_all()

    def _unmanaged_active(self) -> Win | None:
        from Xlib.error import XError
        try:
            w = self.d.create_resource_object("window", self.active_id)
            return Win(self.active_id, _title(w, self.A), _app(w, self.A), 0, 0, 0, 0)
        except XError:
            return None


def _title(w, A) -> str:
    from Xlib.error import XError
    try:
        p = w.get_full_property(A["_NET_WM_NAME"], A["UTF8_STRING"])
        if p and p.value:
            v = p.value
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        n = w.get_wm_name()
    except XError:
        return ""
    if isinstance(n, bytes):
        n = n.decode("latin-1", "replace")
    return n or ""


def _app(w, A) -> str:
    from Xlib.error import XError
    try:
        cls = w.get_wm_class()
        if cls:
            return cls[1] or cls[0]
        p = w.get_full_property(A["_NET_WM_PID"], 0)
    except XError:
        return ""
    if p and len(p.value):
        try:
            with open(f"/proc/{int(p.value[0])}/comm") as f:
                return f.read().strip()
        except OSError:
            pass
    return ""


def _hidden(w, A) -> bool:
    from Xlib.error import XError
    try:
        st = w.get_full_property(A["_NET_WM_STATE"], 0)
    except XError:
        return False
    return bool(st) and A["_NET_WM_STATE_HIDDEN"] in list(st.value)


def matching_windows(wins: list[Win], patterns: list[re.Pattern]) -> list[Win]:
    return [w for w in wins if any(p.search(w.title or "") for p in patterns)]
