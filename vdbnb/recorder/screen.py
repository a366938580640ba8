"""A display as a capture source: grab at a fixed tick (mss), privacy (excluded windows and rectangles, pause)
applied before anything leaves, JPEG thumbnails for the preview, frames for the encoder with the active window."""
from __future__ import annotations

import base64
import collections
import io
import math
import re
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from vdbnb.recorder.sources import _Source
from vdbnb.recorder.x11 import Win, WindowTracker, matching_windows


class Privacy:
    """Windows excluded by title regex and rectangles (global X coords) blacked out before encoding."""

    def __init__(self, spec: dict | None = None):
        spec = spec or {}
        self.patterns = [re.compile(p, re.I) for p in (spec.get("exclude_windows") or spec.get("excludeWindows") or [])]
        self.rects = []
        for r in spec.get("exclude_rects") or spec.get("excludeRects") or []:
            if isinstance(r, dict):
                self.rects.append((int(r["x"]), int(r["y"]), int(r.get("w", r.get("width"))),
                                   int(r.get("h", r.get("height"))), r.get("display")))
            else:
                x, y, w, h = r[:4]
                self.rects.append((int(x), int(y), int(w), int(h), None))
        self.pad = int(spec.get("window_padding", 4))
        # where an excluded window was, until windows under it have repainted (toolkits that leave their
        # background to the client show its stale pixels until they do)
        self.afterglow_s = float(spec.get("afterglow_s", 1.0))
        self._left: list[tuple[tuple, float]] = []

    def __bool__(self):
        return bool(self.patterns or self.rects)

    def excluded(self, win: Win | None) -> bool:
        return bool(win) and any(p.search(win.title or "") for p in self.patterns)

    def boxes(self, wins: list[Win]) -> list[tuple[int, int, int, int, str | None]]:
        """The rectangles and the frames (title bar included: it shows the title) of excluded windows."""
        out = list(self.rects)
        for w in matching_windows(wins, self.patterns):
            out.append((w.x - self.pad, w.y - self.pad, w.w + 2 * self.pad, w.h + 2 * self.pad, None))
        return out

    def decide(self, before: list[Win], after: list[Win], events: list[tuple[int, str]] | None):
        """What to black out on a frame grabbed while the window list went from ``before`` (asked just before
        the grab) to ``after`` (the tracker's barrier just after it), ``events`` being what the X server said
        changed in between. Returns the boxes, or None when where an excluded window was at grab time cannot
        be known (the frame must then be dropped):

        * nothing changed: the excluded windows of ``before`` (= ``after``);
        * each excluded window changed at most once (mapped, moved, retitled): it was in its ``before`` or
          its ``after`` state at grab time, so both are blacked out;
        * an excluded window moved or was retitled twice or more (it may have been anywhere in between), any
          window was retitled twice or more (it may have passed through an excluded title), or the tracker
          lost events: None."""
        if events is None:
            return None
        ex = {w.wid for w in matching_windows(before, self.patterns)} | \
             {w.wid for w in matching_windows(after, self.patterns)}
        counts = collections.Counter((w, "title" if k == "new" else k) for w, k in events)
        for (wid, kind), n in counts.items():
            if n > 1 and (kind == "title" or (kind == "geom" and wid in ex)):
                return None
        now = time.monotonic()
        now_at = {(w.wid, w.x, w.y, w.w, w.h) for w in after}
        left = [w for w in before if w.wid in ex and (w.wid, w.x, w.y, w.w, w.h) not in now_at]
        self._left = [(b, t) for b, t in self._left if t > now] + \
                     [(b, now + self.afterglow_s) for b in self.boxes(left)[len(self.rects):]]
        boxes = self.boxes([w for w in before if w.wid in ex] + [w for w in after if w.wid in ex])
        return boxes + [b for b, _ in self._left if b not in boxes]


_EVERYTHING = (-(1 << 30), -(1 << 30), 1 << 31, 1 << 31, None)  # a box over every display: black it all


def apply_masks(img: np.ndarray, mon: dict, boxes, display_id: str) -> int:
    """Black out boxes (global coords) on a display image in place; returns how many touched it."""
    n = 0
    H, W = img.shape[:2]
    for x, y, w, h, disp in boxes:
        if disp is not None and disp != display_id:
            # display-relative rectangle for another display
            continue
        if disp is not None:  # display-relative coordinates
            gx, gy = x, y
        else:
            gx, gy = x - mon["left"], y - mon["top"]
        x0, y0 = max(0, gx), max(0, gy)
        x1, y1 = min(W, gx + w), min(H, gy + h)
        if x1 > x0 and y1 > y0:
            img[y0:y1, x0:x1, :3] = 0
            n += 1
    return n


def make_thumbnail(bgra, width: int = 320, quality: int = 70) -> tuple[bytes, int, int]:
    """Downscaled JPEG of a BGRA ndarray or an av.VideoFrame (swscale area filter, then PIL JPEG)."""
    import av
    from PIL import Image

    frame = bgra if isinstance(bgra, av.VideoFrame) else av.VideoFrame.from_ndarray(bgra, format="bgra")
    h = max(2, round(frame.height * width / frame.width))
    # FAST_BILINEAR: 1.1 ms for 1080p → 320 px (AREA: 3.8 ms), measured; fine for a live preview
    small = frame.reformat(width=width, height=h, format="rgb24", interpolation="FAST_BILINEAR").to_ndarray()
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, "JPEG", quality=quality)
    return buf.getvalue(), width, h


class ScreenSource(_Source):
    """Grabs one display at a fixed tick. ``on_frame(img_bgra, ts, encode: bool)``, ``on_thumb(...)``."""

    def __init__(self, channel_id: str, index: int, tracker: WindowTracker, emit: Callable[[str, dict], None],
                 on_lost: Callable[[str, str], None]):
        self.channel_id = channel_id
        self.index = index
        self.tracker = tracker
        self.emit = emit
        self.on_lost = on_lost
        self.thumb_fps = 2.5  # preview; while recording: max(2, video fps)
        self.thumb_width = 320
        self.preview = False
        self.encoder_cb: Callable[[np.ndarray, float, dict], None] | None = None
        self.tick_cb: Callable[[float], None] | None = None
        self.enc_fps = 2.0
        self.paused = False
        self.privacy = Privacy()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"grabs": 0, "thumbs": 0, "encoded": 0, "grab_ms": 0.0}
        self._changed = threading.Event()
        self._warned = False
        # an unchanged screen is not re-encoded (the last frame holds: variable frame rate), except for a
        # heartbeat frame every heartbeat_s; set skip_static=False for constant frame rate
        self.skip_static = True
        self.heartbeat_s = 60.0
        self._prev_raw = None
        self._enc_every = 1
        self._frame = None
        self._prev_state = None
        self._last_enc = 0.0

    def update(self):
        super().update()
        self._changed.set()

    def _start(self):
        self._halt.clear()
        self.tracker.acquire()
        self._thread = threading.Thread(target=self._run, name=f"screen-{self.channel_id}", daemon=True)
        self._thread.start()

    def _stop(self):
        self._halt.set()
        self._thread.join(5)
        self._thread = None
        self.tracker.release()

    def _frame_of(self, buf, w: int, h: int):
        """A BGRA av.VideoFrame of the grab, reusing one buffer (0.6 ms vs 2.4 ms for from_ndarray)."""
        import av

        f = self._frame
        if f is None or f.width != w or f.height != h:
            f = self._frame = av.VideoFrame(w, h, "bgra")
        pl = f.planes[0]
        if pl.line_size != w * 4:
            return av.VideoFrame.from_ndarray(np.frombuffer(buf, np.uint8).reshape(h, w, 4), format="bgra")
        pl.update(buf if not isinstance(buf, np.ndarray) else buf.tobytes() if not buf.flags.c_contiguous
                  else memoryview(buf).cast("B"))
        return f

    # ---------------------------------------------------------------- used by the session
    def record(self, feed: Callable[[Any, float, dict], None], tick: Callable[[float], None], privacy: Privacy,
               fps: float, skip_static: bool = True, heartbeat_s: float = 60.0) -> None:
        """Encode this display: ``feed(frame, ts, meta)`` at ``fps`` (an unchanged frame is skipped, see
        ``skip_static``, and ``tick(ts)`` is called instead), ``privacy`` applied before anything leaves."""
        self.enc_fps, self.skip_static, self.heartbeat_s = float(fps), bool(skip_static), float(heartbeat_s)
        self._prev_raw = None  # the first frame of a recording is always encoded
        self.privacy, self.paused = privacy, False
        self.encoder_cb, self.tick_cb = feed, tick
        self.update()

    def unrecord(self) -> None:
        """Stop encoding (a preview goes on); privacy and pause are reset."""
        self.encoder_cb = self.tick_cb = None
        self.paused, self.privacy = False, Privacy()
        self.update()

    # ---------------------------------------------------------------- the grab thread
    def _run(self):
        from vdbnb.recorder.devices import open_mss

        sct = open_mss()
        try:
            mon = sct.monitors[self.index]
        except IndexError:
            self.on_lost(self.channel_id, f"display {self.index} is not connected")
            return
        ticker = _Ticker()
        last_geo_check = time.time()
        try:
            while not self._halt.is_set():
                recording = self.encoder_cb is not None
                if not ticker.wait(self._tick_period(recording), self._halt, self._changed):
                    break
                privacy = self.privacy
                before = self.tracker.state() if privacy.patterns else None  # the stack the grab starts from
                grabbed = self._grab(sct, mon)
                if grabbed is None:
                    return
                shot, ts = grabbed
                img = np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)
                stack = self._window_stack(privacy, before)
                if stack is None:  # where excluded windows were at grab time is unknown: the frame is dropped
                    self.stats["privacy_dropped"] = self.stats.get("privacy_dropped", 0) + 1
                    continue
                active, wins, boxes, title_private = stack
                paused = self.paused
                img, masked = self._mask(img, mon, boxes, paused)
                frame = None
                if self.preview:   # thumbnails only while someone watches (a panel's startPreview)
                    frame = self._thumbnail(img if masked else shot.raw, shot, ts, paused)
                if self._encode_due(ticker.n, shot, ts, (paused, bool(privacy), len(wins), tuple(boxes or ()))):
                    if frame is None:
                        frame = self._frame_of(img if masked else shot.raw, shot.width, shot.height)
                    self._encode(frame, ts, self._meta(active, mon, paused, title_private))
                if time.time() - last_geo_check > 2.0:
                    last_geo_check = time.time()
                    mon = self._current_monitor(sct, mon)
                    if mon is None:
                        return
        finally:
            sct.close()

    def _tick_period(self, recording: bool) -> float:
        """Seconds between grabs: the thumbnail rate, or while recording the encoder's rate, with a preview's
        thumbnails (>= 2 fps) riding on it (every ``_enc_every``-th grab is encoded). Without a preview a
        recording grabs at the encoder's rate only: 1 fps costs half the grabs of 2 fps and no JPEGs."""
        if recording:
            thumbs = min(self.thumb_fps, 2.0) if self.preview else 0.0
            self._enc_every = max(1, math.ceil(thumbs / self.enc_fps - 1e-9))
            return 1.0 / (self.enc_fps * self._enc_every)
        return 1.0 / self.thumb_fps

    def _grab(self, sct, mon):
        """(shot, ts at the middle of the grab), or None when the display is lost (reported)."""
        try:
            g0 = time.time()
            shot = sct.grab(mon)
            g1 = time.time()
        except Exception as e:  # noqa: BLE001
            self.on_lost(self.channel_id, f"cannot grab display {self.index}: {e}")
            return None
        self.stats["grabs"] += 1
        self.stats["cpu_s"] = round(time.thread_time(), 3)   # this thread's CPU (bench_recorder)
        self.stats["grab_ms"] += (g1 - g0) * 1000
        return shot, (g0 + g1) / 2

    def _window_stack(self, privacy: Privacy, before):
        """The windows at grab time and what to black out: (active, visible windows, boxes, whether the
        active window's title is private), or None when the frame must be dropped.

        Without excluded windows: the tracker's current list. With them (fail closed): a barrier right after
        the grab (every X event generated before it processed; see vdbnb.recorder.x11) decides from the stack
        before and after the grab (:meth:`Privacy.decide`); no answer from X (no window list, no python-xlib,
        X gone): everything is blacked out and the active title withheld."""
        if not privacy.patterns:
            active, wins = self.tracker.snapshot()
            return active, wins, (privacy.boxes(wins) if privacy else None), False
        v0, _, wins0 = before
        b = self.tracker.barrier(v0) if self.tracker.ready.wait(2.0) else None
        if b is None:
            if not self._warned:
                self._warned = True
                self.emit("error", {"code": "PRIVACY_UNAVAILABLE", "channel_id": self.channel_id,
                                    "message": "window exclusion needs the X11 window list "
                                               f"({self.tracker.error or 'no answer'}); frames are blacked out"})
            return None, [], [_EVERYTHING], True
        boxes = privacy.decide(wins0, b.wins, b.events)
        if boxes is None:
            return None
        active = b.active
        title_private = privacy.excluded(active) or (active is not None and any(
            w.wid == active.wid and privacy.excluded(w) for w in wins0))
        return active, b.wins, boxes, title_private

    def _mask(self, img: np.ndarray, mon: dict, boxes, paused: bool) -> tuple[np.ndarray, bool]:
        """Paused: a black frame; excluded windows and rectangles: blacked out. Returns (img, masked)."""
        if paused or _EVERYTHING in (boxes or ()):
            return np.zeros_like(img), True
        if boxes:
            img = img.copy()
            apply_masks(img, mon, boxes, self.channel_id)
            return img, True
        return img, False

    def _thumbnail(self, pixels, shot, ts: float, paused: bool):
        """Emit a JPEG thumbnail; returns the frame made for it (the encoder reuses it), None on failure."""
        try:
            frame = self._frame_of(pixels, shot.width, shot.height)
            jpg, w, h = make_thumbnail(frame, self.thumb_width)
        except Exception as e:  # noqa: BLE001
            print(f"thumbnail failed: {e}", file=sys.stderr)
            return None
        self.stats["thumbs"] += 1
        self.emit("thumbnail", {"channel_id": self.channel_id, "ts": ts, "width": w, "height": h,
                                "paused": paused, "jpeg_b64": base64.b64encode(jpg).decode()})
        return frame

    def _encode_due(self, n_tick: int, shot, ts: float, state: tuple) -> bool:
        """Whether this grab is encoded: on the encoder's schedule, and (``skip_static``) only when the
        screen or its state changed or a heartbeat is due; a skipped one ticks the fragmenter instead."""
        if self.encoder_cb is None or (n_tick - 1) % self._enc_every != 0:
            return False
        if not self.skip_static:
            return True
        if shot.raw == self._prev_raw and state == self._prev_state and ts - self._last_enc < self.heartbeat_s:
            self.stats["skipped_static"] = self.stats.get("skipped_static", 0) + 1
            tcb = self.tick_cb
            if tcb is not None:
                tcb(ts)
            return False
        self._prev_raw, self._prev_state, self._last_enc = shot.raw, state, ts
        return True

    def _meta(self, active: Win | None, mon: dict, paused: bool, title_private: bool) -> dict[str, Any]:
        """The frame's metadata: the active window (title, app, whether it is on this display); nothing of
        it while paused or while the active window is an excluded one (its title is as private as its pixels)."""
        meta: dict[str, Any] = {"window_title": active.title if active else None,
                                "app": active.app if active else None}
        if active and active.w:
            cx, cy = active.x + active.w / 2, active.y + active.h / 2
            meta["active_on_display"] = bool(mon["left"] <= cx < mon["left"] + mon["width"]
                                             and mon["top"] <= cy < mon["top"] + mon["height"])
        if paused:
            meta["paused"] = True
            meta["window_title"] = meta["app"] = None
        elif title_private:
            meta["window_title"] = meta["app"] = None
            meta["excluded_window_active"] = True
        return meta

    def _encode(self, frame, ts: float, meta: dict) -> None:
        cb = self.encoder_cb
        if cb is not None:
            cb(frame, ts, meta)
        self.stats["encoded"] += 1

    def _current_monitor(self, sct, mon: dict) -> dict | None:
        """The display's geometry now; None when it was disconnected (reported)."""
        try:
            mons = sct.monitors
            if self.index >= len(mons):
                self.on_lost(self.channel_id, f"display {self.index} was disconnected")
                return None
            return mons[self.index]
        except Exception:  # noqa: BLE001
            return mon


class _Ticker:
    """The grab schedule: grab k at ``t_start + k * period``; re-phased when the configuration changed, and
    skipped ahead instead of bursting when the thread fell behind (CPU starved)."""

    def __init__(self):
        self.t_start, self.n = time.time(), 0

    def wait(self, period: float, halt: threading.Event, changed: threading.Event) -> bool:
        """Wait for the next grab; False when ``halt`` was set meanwhile."""
        if changed.is_set():
            changed.clear()
            self.t_start, self.n = time.time(), 0
        delay = self.t_start + self.n * period - time.time()
        if delay > 0:
            if halt.wait(delay):
                return False
        elif delay < -2 * period:
            self.t_start, self.n = time.time(), 0
        self.n += 1
        return True
