"""Capture sources, each on its own thread: screens (mss) and audio (a capture subprocess per channel).

A source runs while it has users (preview and/or recording). Callbacks run on the source's thread.
"""
from __future__ import annotations

import base64
import io
import math
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from vdbnb.config import child_env
from vdbnb.recorder.x11 import Win, WindowTracker, matching_windows

AUDIO_RATE = 48000
BLOCK = 2880  # 60 ms per read = one Opus frame; one level event per block (16.7 Hz)


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
        self.pad = int(spec.get("window_padding", 40))

    def __bool__(self):
        return bool(self.patterns or self.rects)

    def boxes(self, wins: list[Win]) -> list[tuple[int, int, int, int, str | None]]:
        out = list(self.rects)
        for w in matching_windows(wins, self.patterns):
            # pad: the frame's title bar shows the (excluded) title too
            out.append((w.x - 8, w.y - self.pad, w.w + 16, w.h + self.pad + 8, None))
        return out


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


class _Source:
    """What a screen and an audio source share: a worker that runs while anyone uses the channel (a preview
    or the encoder); subclasses say how it starts (``_start``) and stops (``_stop``)."""
    preview: bool
    encoder_cb: Callable | None
    _thread: threading.Thread | None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def update(self):
        """(Re)start or stop the worker according to its users."""
        want = self.preview or self.encoder_cb is not None
        if want and not self.running:
            self._start()
        elif not want and self.running:
            self._stop()

    def stop(self):
        self.preview = False
        self.encoder_cb = None
        self.update()

    def _start(self):
        raise NotImplementedError

    def _stop(self):
        raise NotImplementedError


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

    def _run(self):
        from vdbnb.recorder.devices import _mss

        sct = _mss()
        try:
            mon = sct.monitors[self.index]
        except IndexError:
            self.on_lost(self.channel_id, f"display {self.index} is not connected")
            return
        n_tick = 0
        t_start = time.time()
        enc_every = 1
        last_geo_check = time.time()
        while not self._halt.is_set():
            recording = self.encoder_cb is not None
            if recording:  # thumbnails at >= 2 fps ride on the encoder's schedule
                enc_every = max(1, math.ceil(min(self.thumb_fps, 2.0) / self.enc_fps - 1e-9))
                tick = 1.0 / (self.enc_fps * enc_every)
            else:
                tick = 1.0 / self.thumb_fps
            if self._changed.is_set():  # re-phase the schedule after a configuration change
                self._changed.clear()
                t_start, n_tick = time.time(), 0
            target = t_start + n_tick * tick
            delay = target - time.time()
            if delay > 0:
                if self._halt.wait(delay):
                    break
            elif delay < -2 * tick:  # fell behind (CPU starved): skip ahead instead of bursting
                t_start, n_tick = time.time(), 0
            n_tick += 1
            try:
                g0 = time.time()
                shot = sct.grab(mon)
                g1 = time.time()
            except Exception as e:  # noqa: BLE001
                self.on_lost(self.channel_id, f"cannot grab display {self.index}: {e}")
                return
            ts = (g0 + g1) / 2
            self.stats["grabs"] += 1
            self.stats["grab_ms"] += (g1 - g0) * 1000
            img = np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)
            masked = False
            privacy = self.privacy
            if privacy.patterns:
                # fail closed: no frame leaves before the window list is known
                self.tracker.hz = max(self.tracker.hz, 10.0)
                if not self.tracker.ready.wait(2.0) or not getattr(self.tracker, "ok", False):
                    img = np.zeros_like(img)
                    if not self._warned:
                        self._warned = True
                        self.emit("error", {"code": "PRIVACY_UNAVAILABLE", "channel_id": self.channel_id,
                                            "message": "window exclusion needs the X11 window list "
                                                       f"({self.tracker.error}); frames are blacked out"})
            active, wins = self.tracker.snapshot()
            paused = self.paused
            if paused:
                img = np.zeros_like(img)
                masked = True
            elif privacy:
                img = img.copy()
                apply_masks(img, mon, privacy.boxes(wins), self.channel_id)
                masked = True
            frame = None
            if self.preview or recording:
                try:

                    frame = self._frame_of(img if masked else shot.raw, shot.width, shot.height)
                    jpg, w, h = make_thumbnail(frame, self.thumb_width)
                    self.stats["thumbs"] += 1
                    self.emit("thumbnail", {"channel_id": self.channel_id, "ts": ts, "width": w, "height": h,
                                            "paused": paused,
                                            "jpeg_b64": base64.b64encode(jpg).decode()})
                except Exception as e:  # noqa: BLE001
                    print(f"thumbnail failed: {e}", file=sys.stderr)
            cb = self.encoder_cb
            due = cb is not None and (n_tick - 1) % enc_every == 0
            if due and self.skip_static:
                state = (paused, bool(privacy), len(wins))
                same = shot.raw == self._prev_raw and state == self._prev_state
                if same and ts - self._last_enc < self.heartbeat_s:
                    due = False
                    self.stats["skipped_static"] = self.stats.get("skipped_static", 0) + 1
                    tcb = self.tick_cb
                    if tcb is not None:
                        tcb(ts)
                else:
                    self._prev_raw, self._prev_state, self._last_enc = shot.raw, state, ts
            if due:
                meta: dict[str, Any] = {"window_title": active.title if active else None,
                                        "app": active.app if active else None}
                if active and active.w:
                    cx, cy = active.x + active.w / 2, active.y + active.h / 2
                    meta["active_on_display"] = bool(mon["left"] <= cx < mon["left"] + mon["width"]
                                                     and mon["top"] <= cy < mon["top"] + mon["height"])
                if paused:
                    meta["paused"] = True
                    meta["window_title"] = meta["app"] = None
                elif active and self.privacy.patterns and any(p.search(active.title or "")
                                                              for p in self.privacy.patterns):
                    # an excluded window's title is as private as its pixels: it never leaves the recorder
                    meta["window_title"] = meta["app"] = None
                    meta["excluded_window_active"] = True
                cb = self.encoder_cb
                if cb is not None:
                    cb(frame if frame is not None else img, ts, meta)
                self.stats["encoded"] += 1
            if time.time() - last_geo_check > 2.0:
                last_geo_check = time.time()
                try:
                    mons = sct.monitors
                    if self.index >= len(mons):
                        self.on_lost(self.channel_id, f"display {self.index} was disconnected")
                        return
                    mon = mons[self.index]
                except Exception:  # noqa: BLE001
                    pass
        sct.close()


def _audio_backend(b: str) -> str:
    """``auto``: ``parec`` when installed (it ships with pactl, which channel listing needs anyway), else the
    sounddevice worker. Measured on the rig, per audio channel: parec 0.25–0.35 % of a core, the sounddevice
    worker (a Python process per channel) 1.3–1.5 % and ~60 MB RSS. Override with VDBNB_AUDIO_BACKEND
    (``Settings.audio_backend``)."""
    if b == "auto":
        return "parec" if shutil.which("parec") else "sounddevice"
    return b


class AudioSource(_Source):
    """One audio channel: a capture subprocess (sounddevice worker with PULSE_SOURCE, or parec) writing
    float32 PCM; a reader thread timestamps blocks on the shared clock, emits levels, feeds the encoder."""

    def __init__(self, channel_id: str, source: str, emit: Callable[[str, dict], None],
                 on_lost: Callable[[str, str], None], level_hz: float = 16.0, channels: int = 1,
                 backend: str = "auto"):
        self.channel_id = channel_id
        self.source = source
        self.emit = emit
        self.on_lost = on_lost
        self.level_hz = level_hz
        self.channels = channels
        self.preview = False
        self.encoder_cb: Callable[[np.ndarray, float], None] | None = None
        self.paused = False
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = {"levels": 0, "samples": 0, "reanchors": 0}
        self.backend = _audio_backend(backend)

    def _cmd(self) -> tuple[list[str], dict]:
        if self.backend == "parec" and shutil.which("parec"):
            return ([shutil.which("parec"), f"--device={self.source}", "--format=float32le",
                     f"--rate={AUDIO_RATE}", f"--channels={self.channels}", "--latency-msec=30", "--process-time-msec=30",
                     "--raw"], child_env())
        env = child_env({"PULSE_SOURCE": self.source})  # the worker's PortAudio opens this source
        return ([sys.executable, "-m", "vdbnb.recorder.audio_worker", "--rate", str(AUDIO_RATE),
                 "--channels", str(self.channels), "--block", str(BLOCK)], env)

    def _start(self):
        self._stopping = False
        cmd, env = self._cmd()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, bufsize=0)
        self._thread = threading.Thread(target=self._run, name=f"audio-{self.channel_id}", daemon=True)
        self._thread.start()

    def _stop(self):
        self._stopping = True
        p = self.proc
        if p and p.poll() is None:
            try:
                p.stdin.close()
            except OSError:
                pass
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
        if self._thread:
            self._thread.join(5)
        self._thread = None
        self.proc = None

    def _run(self):
        restarts = 0
        while True:
            got, reason = self._run_once()
            if self._stopping or reason is None:
                return
            # the capture process stopped: if the sound server still has the source it was a hiccup (a null
            # sink's monitor can stay silent for ~2 s at start-up, measured) → restart (after 2 failures with
            # parec if installed); if the source is gone → channel lost
            if self._source_exists() and restarts < 5:
                restarts += 1
                self.stats["restarts"] = restarts
                if restarts == 2 and shutil.which("parec"):
                    self.backend = "parec"
                print(f"[audio {self.channel_id}] capture process failed early ({reason}); restarting with "
                      f"{self.backend}", file=sys.stderr, flush=True)
                cmd, env = self._cmd()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, env=env, bufsize=0)
                continue
            self.on_lost(self.channel_id, reason)
            return

    def _source_exists(self) -> bool:
        try:
            from vdbnb.recorder.devices import _pactl, parse_sources

            return any(x["name"] == self.source for x in parse_sources(_pactl("list", "sources")))
        except Exception:  # noqa: BLE001 - sound server gone too
            return False

    def _run_once(self) -> tuple[int, str | None]:
        p = self.proc
        nbytes = BLOCK * 4 * self.channels
        win = min(int(AUDIO_RATE / self.level_hz), BLOCK)
        lvl_buf: list[np.ndarray] = []
        lvl_n = 0
        anchor: float | None = None
        count = 0
        fd = p.stdout
        pending = b""
        while True:
            try:
                chunk = fd.read(nbytes)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                break
            ta = time.time()
            pending += chunk
            usable = len(pending) - len(pending) % (4 * self.channels)
            if usable == 0:
                continue
            data, pending = pending[:usable], pending[usable:]
            pcm = np.frombuffer(data, np.float32).reshape(-1, self.channels)
            n = len(pcm)
            # one clock: the sample counter anchored at the earliest plausible capture time, re-anchored on
            # a dropout or a drift larger than 200 ms
            est = ta - (count + n) / AUDIO_RATE
            if anchor is None or est < anchor:
                anchor = est
            elif est - anchor > 0.2:
                anchor = est
                self.stats["reanchors"] += 1
            t_first = anchor + count / AUDIO_RATE
            count += n
            self.stats["samples"] += n
            mono = pcm[:, 0] if self.channels == 1 else pcm.mean(axis=1)
            lvl_buf.append(mono)
            lvl_n += n
            if lvl_n >= win:
                a = np.concatenate(lvl_buf) if len(lvl_buf) > 1 else lvl_buf[0]
                lvl_buf, lvl_n = [], lvl_n - win  # carry the remainder: the rate averages level_hz
                rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
                peak = float(np.max(np.abs(a))) if len(a) else 0.0
                self.stats["levels"] += 1
                self.emit("audio-level", {"channel_id": self.channel_id, "ts": t_first + n / AUDIO_RATE,
                                          "rms": round(rms, 5), "peak": round(peak, 5),
                                          "paused": self.paused})
            cb = self.encoder_cb
            if cb is not None:
                cb(np.zeros_like(pcm) if self.paused else pcm, t_first)
        if not self._stopping:
            err = b""
            try:
                err = p.stderr.read() or b""
            except (OSError, ValueError):
                pass
            rc = p.wait()
            text = err.decode(errors="replace").strip()
            if text:
                print(f"[audio {self.channel_id}] exited {rc}:\n{text[-4000:]}", file=sys.stderr, flush=True)
            msg = [m for m in text.splitlines() if m.strip() and not m.startswith(("ALSA lib", "Expression"))]
            why = msg[-1].strip() if msg else f"capture process exited with code {rc}"
            return count, f"audio source {self.source!r} stopped: {why}"
        return count, None
