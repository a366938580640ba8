"""Recorder: encode once. :class:`VideoEncoder` — H.264 (libx264, zerolatency, CRF, no B-frames, Annex-B with
SPS/PPS repeated before every keyframe), a keyframe at least every ``gop_s`` seconds (120 s: a keyframe of a
1080p desktop with text is ~260 KB, a changed frame mostly a few KB; bench/bench_screen_codec.py),
optional downscale. :class:`AudioEncoder` — Opus 48 kHz (mono default), VBR tuned for speech. Both return
:class:`Packet` s stamped in epoch seconds on the recorder's one clock; :mod:`.fragmenter` groups them."""
from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from .formats import OPUS_RATE


@dataclass
class Packet:
    data: bytes
    pts: float          # epoch seconds
    dur: float
    key: bool


class VideoEncoder:
    """H.264 screen encoder. ``encode(bgra, pts)`` → list of :class:`Packet` (zero-latency: 0 or 1 packet)."""

    def __init__(self, width: int, height: int, fps: float = 2.0, crf: int = 32, gop_s: float = 120.0,
                 scale: float | None = None, max_width: int | None = None, preset: str = "veryfast",
                 threads: int = 1, tune: str = "zerolatency", x264: dict | None = None):
        self.src_w, self.src_h = width, height
        w, h = width, height
        if scale and scale != 1.0:
            w, h = int(w * scale), int(h * scale)
        if max_width and w > max_width:
            w, h = max_width, int(h * max_width / w)
        self.width, self.height = w - (w % 2), h - (h % 2)
        self.fps = float(fps)
        self.gop_s = float(gop_s)
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = self.width, self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = fractions.Fraction(1, 1000)
        ctx.framerate = fractions.Fraction(int(round(self.fps * 1000)), 1000)
        ctx.thread_count = threads
        # screen content: no B-frames, no lookahead (a frame is out as soon as it is in); keyframes are forced
        # by us (pict_type I) so that a GOP never exceeds gop_s whatever the real capture rate; scenecut off.
        # ``x264``: more x264 parameters (bench/bench_screen_codec.py compares them on the same input).
        # me=umh, merange=64: scrolled text is found as motion (a page moved by three lines), not re-coded:
        # -22 % bytes for +2 % encode CPU on the work scene (bench/bench_screen_codec.py)
        params = {"scenecut": 0, "keyint": "infinite", "bframes": 0, "repeat-headers": 1, "ipratio": 1.1,
                  "rc-lookahead": 0, "sync-lookahead": 0, "me": "umh", "merange": 64, **(x264 or {})}
        tunes = ",".join(dict.fromkeys(t for t in ("zerolatency", tune) if t))
        ctx.options = {"preset": preset, "tune": tunes, "crf": str(crf),
                       "x264-params": ":".join(f"{k}={v}" for k, v in params.items())}
        ctx.open()
        self.ctx = ctx
        self.t_origin: float | None = None
        self.last_key: float | None = None
        self._last_pts: float | None = None

    def encode(self, img: np.ndarray, pts: float, fmt: str = "bgra") -> list[Packet]:
        if self.t_origin is None:
            self.t_origin = pts
        frame = img if isinstance(img, av.VideoFrame) else av.VideoFrame.from_ndarray(img, format=fmt)
        fmt = frame.format.name
        if frame.width != self.width or frame.height != self.height or fmt != "yuv420p":
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p",
                                   interpolation="FAST_BILINEAR")
        ms = int(round((pts - self.t_origin) * 1000))
        if self._last_pts is not None and ms <= self._last_pts:
            ms = int(self._last_pts) + 1
        self._last_pts = ms
        frame.pts = ms
        # keep every GOP <= gop_s: force a keyframe when the next frame would overflow it
        if self.last_key is None or pts - self.last_key + 1.0 / self.fps > self.gop_s + 1e-6:
            frame.pict_type = av.video.frame.PictureType.I
            self.last_key = pts
        else:  # a decoded frame carries its source's picture type: the encoder decides, not the source
            frame.pict_type = av.video.frame.PictureType.NONE
        return self._wrap(self.ctx.encode(frame))

    def flush(self) -> list[Packet]:
        try:
            return self._wrap(self.ctx.encode(None))
        except av.error.EOFError:
            return []

    def _wrap(self, pkts) -> list[Packet]:
        out = []
        for p in pkts:
            out.append(Packet(bytes(p), self.t_origin + p.pts / 1000.0, 1.0 / self.fps, bool(p.is_keyframe)))
        return out

    @property
    def codec_info(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "fps": self.fps}


class AudioEncoder:
    """Opus encoder fed with 48 kHz PCM (float32 in [-1, 1] or int16); ``push(pcm, t_first_sample)`` → packets.

    Defaults (measured on speech, see bench/bench_recorder.py): 12 kb/s VBR "voip", 60 ms packets — per-packet
    header bytes dominate at 20 ms (50 packet entries per second of JSON).
    Timestamps follow the sample count from the first pushed sample; the caller re-anchors (``reset_clock``)
    after a capture discontinuity. A push of several whole frames encodes them all (one call per chunk).
    """

    def __init__(self, channels: int = 1, bitrate: int = 12000, frame_ms: int = 60, application: str = "voip",
                 complexity: int = 5):
        self.channels = channels
        self.frame_ms = frame_ms
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = OPUS_RATE
        ctx.layout = "mono" if channels == 1 else "stereo"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        # complexity 5 (compression_level): 0.36 ms per 60 ms frame vs 0.5 ms at 10, measured; speech is fine
        ctx.options = {"application": application, "frame_duration": str(frame_ms), "vbr": "on",
                       "compression_level": str(complexity)}
        ctx.open()
        self.ctx = ctx
        self._layout = ctx.layout.name
        self.n = ctx.frame_size or OPUS_RATE * frame_ms // 1000
        self._buf = np.zeros((0, channels), np.int16)   # samples short of a whole frame
        self._t0: float | None = None        # epoch of the first sample of the encoder's sample counter
        self._samples = 0                    # samples given to the encoder
        self._offset = 0                     # pts offset (samples) for the current anchor

    def push(self, pcm: np.ndarray, t: float) -> list[Packet]:
        pcm = np.asarray(pcm)
        if pcm.ndim == 1:
            pcm = pcm[:, None]
        if pcm.dtype != np.int16:
            pcm = (np.clip(pcm.astype(np.float32, copy=False), -1, 1) * 32767).astype(np.int16)
        if pcm.shape[1] != self.channels:
            pcm = pcm.mean(axis=1, keepdims=True).astype(np.int16) if self.channels == 1 \
                else np.repeat(pcm[:, :1], 2, axis=1)
        if self._t0 is None:
            self._t0 = t
        else:
            # the encoder's clock of the next buffered sample vs the capture clock: re-align on drift > 40 ms
            expected = self._t0 + (self._samples + len(self._buf)) / OPUS_RATE
            if abs(expected - t) > 0.04:
                gap = t - expected
                if gap > 0:  # samples were lost upstream: fill honest silence so pts stay continuous
                    fill = min(int(gap * OPUS_RATE), OPUS_RATE * 5)
                    self._buf = np.concatenate([self._buf, np.zeros((fill, self.channels), np.int16)])
                    if gap > 5:
                        self._t0 += gap - 5
                else:  # capture clock ran behind: move the anchor
                    self._t0 += gap
        if len(self._buf):
            pcm = np.concatenate([self._buf, pcm])
        whole = len(pcm) - len(pcm) % self.n
        out: list[Packet] = []
        for i in range(0, whole, self.n):   # aligned chunks (the recorder's): no copying
            out += self._encode(pcm[i:i + self.n])
        self._buf = pcm[whole:].copy() if whole < len(pcm) else pcm[:0]
        return out

    def _encode(self, chunk: np.ndarray) -> list[Packet]:
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk).reshape(1, -1), format="s16",
                                       layout=self._layout)
        f.sample_rate = OPUS_RATE
        f.pts = self._samples
        self._samples += len(chunk)
        return self._wrap(self.ctx.encode(f))

    def flush(self) -> list[Packet]:
        out: list[Packet] = []
        if len(self._buf):
            pad = np.zeros((self.n - len(self._buf), self.channels), np.int16)
            out += self._encode(np.concatenate([self._buf, pad]))
            self._buf = self._buf[:0]
        try:
            out += self._wrap(self.ctx.encode(None))
        except av.error.EOFError:
            pass
        return out

    def _wrap(self, pkts) -> list[Packet]:
        return [Packet(bytes(p), self._t0 + p.pts / OPUS_RATE, (p.duration or self.n) / OPUS_RATE, True)
                for p in pkts]

    @property
    def codec_info(self) -> dict[str, Any]:
        return {"sample_rate": OPUS_RATE, "channels": self.channels, "frame_ms": self.frame_ms}
