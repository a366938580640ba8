"""LocalPreviewSource: an in-kernel preview of screens (mss) and audio inputs (sounddevice).

It shows what *would* be captured before any recorder or server exists: one live thumbnail per display and
one level meter per audio input (microphone = the default input; system audio = the monitor of the default
output, found with ``pactl`` on PulseAudio/PipeWire). It cannot record: ``start()`` raises
NotImplementedError with what to do instead. Capture runs in daemon threads (mss releases the GIL while
grabbing; the audio callback runs on PortAudio's thread), so the kernel stays free.
"""
from __future__ import annotations

import io
import threading
import time
from typing import Any, Callable

import numpy as np

from vdbnb.config import Settings, pulse_source
from vdbnb.recorder.devices import open_mss, list_channels
from vdbnb.widgets.sources import Listeners

Listener = Callable[[str, dict], None]


def preview_channels() -> list[dict]:
    """The recorder's channels (one discovery: :func:`vdbnb.recorder.devices.list_channels`) that the preview
    shows: every display, the default microphone and the default system audio."""
    chans, _problems = list_channels(Settings.from_env())
    out = []
    for c in chans:
        if c.type == "video":
            out.append({"channel_id": c.channel_id, "type": "video", "category": "screen",
                        "name": f"{c.extra.get('output') or 'Display ' + c.channel_id[8:]} · "
                                f"{c.extra['width']}×{c.extra['height']}",
                        "monitor": int(c.channel_id.split(":", 1)[1]), "is_primary": bool(c.extra["is_primary"])})
        elif c.channel_id in ("mic:default", "system_audio:default") and _portaudio_ok():
            out.append({"channel_id": c.channel_id, "type": "audio", "category": c.channel_id.split(":")[0],
                        "name": c.name, "pulse_source": c.extra["source"]})
    return out


def _portaudio_ok() -> bool:
    try:
        import sounddevice as sd
        sd.query_devices(kind="input")
        return True
    except Exception:  # noqa: BLE001 - no PortAudio or no input device
        return False


class LocalPreviewSource:
    """A :class:`~vdbnb.widgets.sources.PreviewSource` that previews but cannot record."""

    def __init__(self, thumb_fps: float = 3.0, thumb_width: int = 480, level_hz: float = 30.0,
                 jpeg_quality: int = 70):
        self.thumb_fps = thumb_fps
        self.thumb_width = thumb_width
        self.level_hz = level_hz
        self.jpeg_quality = jpeg_quality
        self._channels: list[dict] | None = None
        self._listeners = Listeners()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: list[Any] = []
        self._paused: set[str] = set()
        self.running = False

    # ---- PreviewSource -----------------------------------------------------------------------
    def list_channels(self) -> list[dict]:
        if self._channels is None:
            self._channels = preview_channels()
        return [dict(c) for c in self._channels]

    def problems(self) -> list[dict]:
        """Why devices are missing (no display, Wayland, no sound server...), as the recorder would say it."""
        try:
            return list_channels(Settings.from_env())[1]
        except Exception:  # noqa: BLE001 - a preview must come up even if discovery itself breaks
            return []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        unsubscribe = self._listeners.add(listener)
        for p in self.problems():          # what is missing and why, with what to do, as errors
            listener("error", p)
        return unsubscribe

    def start(self, channels: list[str]) -> Any:
        raise NotImplementedError("local preview cannot record; use the recorder (vdbnb.CaptureClient) as the "
                                  "panel's source")

    def stop(self) -> Any:
        raise NotImplementedError("local preview cannot record")

    def pause(self, channel_id: str) -> None:
        self._paused.add(channel_id)

    def resume(self, channel_id: str) -> None:
        self._paused.discard(channel_id)

    def start_preview(self, channels: list[str] | None = None) -> None:
        if self.running:
            return
        chans = [c for c in self.list_channels() if channels is None or c["channel_id"] in channels]
        self._stop.clear()
        self.running = True
        displays = [c for c in chans if c["type"] == "video"]
        if displays:
            th = threading.Thread(target=self._grab_loop, args=(displays,), name="vdbnb-preview-screens",
                                  daemon=True)
            th.start()
            self._threads.append(th)
        for ch in chans:
            if ch["type"] == "audio":
                try:
                    self._open_audio(ch)
                except Exception as e:  # noqa: BLE001 - shown as a panel error
                    self._emit("error", {"code": "AUDIO_DEVICE", "channel_id": ch["channel_id"],
                                         "message": f"cannot open audio input: {e}"})

    def stop_preview(self) -> None:
        self._stop.set()
        for s in self._streams:
            try:
                s.stop()
                s.close()
            except Exception:  # noqa: BLE001
                pass
        self._streams.clear()
        for th in self._threads:
            th.join(timeout=2)
        self._threads.clear()
        self.running = False

    close = stop_preview

    # ---- internals ---------------------------------------------------------------------------
    def _emit(self, kind: str, payload: dict) -> None:
        self._listeners.emit(kind, payload)

    def _grab_loop(self, displays: list[dict]) -> None:
        from PIL import Image
        period = 1.0 / self.thumb_fps
        try:
            sct = open_mss()
        except Exception as e:  # noqa: BLE001
            self._emit("error", {"code": "NO_DISPLAY", "message": f"cannot open the display: {e}"})
            return
        with sct:
            next_at = time.monotonic()
            while not self._stop.is_set():
                for ch in displays:
                    if ch["channel_id"] in self._paused:
                        continue
                    try:
                        shot = sct.grab(sct.monitors[ch["monitor"]])
                        img = Image.frombuffer("RGB", shot.size, shot.bgra, "raw", "BGRX", 0, 1)
                        factor = max(1, shot.size[0] // self.thumb_width)
                        if factor > 1:
                            img = img.reduce(factor)
                        if img.width > self.thumb_width:
                            img = img.resize((self.thumb_width, round(img.height * self.thumb_width / img.width)))
                        buf = io.BytesIO()
                        img.save(buf, "JPEG", quality=self.jpeg_quality)
                    except Exception as e:  # noqa: BLE001
                        self._emit("error", {"code": "NO_DISPLAY", "channel_id": ch["channel_id"],
                                             "message": f"screen grab failed: {e}"})
                        self._stop.wait(1.0)
                        continue
                    self._emit("thumbnail", {"channel_id": ch["channel_id"], "ts": time.time(),
                                             "width": img.width, "height": img.height, "jpeg": buf.getvalue()})
                next_at += period
                delay = next_at - time.monotonic()
                if delay < 0:
                    next_at = time.monotonic()
                    delay = 0
                self._stop.wait(delay)

    def _open_audio(self, ch: dict) -> None:
        import sounddevice as sd
        cid = ch["channel_id"]
        rate = 48000
        block = int(rate / self.level_hz)

        state = {"t0": None, "frames": 0, "carry": np.zeros(0, dtype=np.float32)}

        def callback(indata, frames, time_info, status):  # PortAudio thread
            # Levels are computed per 1/level_hz of *audio* and stamped with audio time, so a late or
            # clumped callback (busy CPU) still yields every level sample, in order.
            x = indata[:, 0] if indata.ndim == 2 else indata
            if state["t0"] is None:
                state["t0"] = time.time() - frames / rate
            buf = np.concatenate([state["carry"], x]) if len(state["carry"]) else x
            n = len(buf) // block
            for i in range(n):
                chunk = buf[i * block:(i + 1) * block]
                state["frames"] += block
                if cid in self._paused:
                    continue
                rms = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64))))
                peak = float(np.max(np.abs(chunk)))
                self._emit("audio-level", {"channel_id": cid, "ts": state["t0"] + state["frames"] / rate,
                                           "rms": rms, "peak": peak})
            state["carry"] = buf[n * block:].copy()

        # PortAudio's pulse plugin reads PULSE_SOURCE when a stream opens: set it only for this open.
        with pulse_source(ch.get("pulse_source")):
            stream = sd.InputStream(samplerate=rate, blocksize=block, channels=1, dtype="float32",
                                    latency="high", callback=callback)
            stream.start()
        self._streams.append(stream)
