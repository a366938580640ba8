"""Server: read stored fragments back. :func:`load_fragments` (objects, packed bytes, ``.frag`` paths or a
directory); :func:`decode_audio` — audio fragments -> (float32 mono PCM at 16 kHz, t0), gaps filled with
silence; :class:`AudioStreamDecoder` — one channel's fragments in order through one decoder (live STT);
:func:`iter_video_frames` — video fragments -> (pts, RGB ndarray)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import av
import numpy as np

from .formats import OPUS_RATE
from .fragments import Fragment, unpack

STT_RATE = 16000


def load_fragments(items: Iterable[Any]) -> list[Fragment]:
    """Accept Fragment objects, packed bytes, or paths to ``.frag`` files (or a directory of them);
    return fragments sorted by seq, duplicates removed."""
    out: dict[int, Fragment] = {}
    for it in items:
        if isinstance(it, Fragment):
            f = it
        elif isinstance(it, (bytes, bytearray, memoryview)):
            f = unpack(bytes(it))
        else:
            p = Path(it)
            if p.is_dir():
                for f2 in load_fragments(sorted(p.glob("*.frag"))):
                    out.setdefault(f2.seq, f2)
                continue
            f = unpack(p.read_bytes())
        out.setdefault(f.seq, f)
    return [out[k] for k in sorted(out)]


def as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, os.PathLike, bytes, Fragment)):
        return [x]
    return list(x)


def _opus_packets(frags: Sequence[Fragment]) -> Iterator[tuple[float, bytes]]:
    for f in frags:
        for p, b in f.packet_bytes():
            yield float(p["pts"]), b


def decode_audio_native(fragments, rate: int = OPUS_RATE, start: float | None = None,
                        end: float | None = None) -> tuple[np.ndarray, float]:
    """Decode audio fragments to float32 mono at ``rate`` placed on the wall clock: sample i is at time
    ``t0 + i/rate``; gaps (missing fragments) are silence. Returns (pcm, t0)."""
    frags = load_fragments(as_list(fragments))
    if not frags:
        return np.zeros(0, np.float32), float(start or 0.0)
    t0 = frags[0].t0 if start is None else start
    t_end = max(f.t1 for f in frags) if end is None else end
    n_total = max(0, int(round((t_end - t0) * rate)))
    out = np.zeros(n_total, np.float32)
    codec = frags[0].codec
    dec = av.CodecContext.create("libopus" if codec == "opus" else codec, "r")
    dec.sample_rate = int(frags[0].codec_info.get("sample_rate", OPUS_RATE))
    dec.layout = "mono" if int(frags[0].codec_info.get("channels", 1)) == 1 else "stereo"
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    for pts, data in _opus_packets(frags):
        try:
            frames = dec.decode(av.Packet(data))
        except av.error.FFmpegError:
            continue
        for fr in frames:
            # place by the packet's capture pts (decoder-timestamp-independent)
            rs = []
            for r in resampler.resample(fr):
                rs.append(r.to_ndarray().reshape(-1))
            if not rs:
                continue
            pcm = np.concatenate(rs).astype(np.float32)
            i0 = int(round((pts - t0) * rate))
            a, b = max(i0, 0), min(i0 + len(pcm), n_total)
            if b > a:
                out[a:b] = pcm[a - i0:b - i0]
    return out, t0


def decode_audio(fragments, rate: int = STT_RATE) -> tuple[np.ndarray, float]:
    """Audio fragments → (float32 mono PCM at 16 kHz for STT, epoch time of sample 0). Gaps are silence."""
    return decode_audio_native(fragments, rate=rate)


def iter_video_frames(fragments, fmt: str = "rgb24", width: int | None = None,
                      height: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Decode video fragments → (pts epoch seconds, HxWx3 uint8 RGB). A fragment that cannot be decoded is
    skipped (each starts with a keyframe, so the next one decodes)."""
    frags = load_fragments(as_list(fragments))
    dec = None
    for f in frags:
        if dec is None or f.packets and f.packets[0].get("key"):
            dec = av.CodecContext.create("h264", "r")
        pts_q = [float(p["pts"]) for p in f.packets]
        qi = 0
        for p, b in f.packet_bytes():
            try:
                frames = dec.decode(av.Packet(b))
            except av.error.FFmpegError:
                dec = av.CodecContext.create("h264", "r")
                break
            for fr in frames:
                pts = pts_q[min(qi, len(pts_q) - 1)]
                qi += 1
                if width or height:
                    fr = fr.reformat(width=width or fr.width, height=height or fr.height)
                yield pts, fr.to_ndarray(format=fmt)
        try:
            for fr in dec.decode(None):
                pts = pts_q[min(qi, len(pts_q) - 1)]
                qi += 1
                yield pts, fr.to_ndarray(format=fmt)
        except (av.error.FFmpegError, ValueError):
            pass
        dec = None


class AudioStreamDecoder:
    """Decodes one audio channel's fragments in order with ONE decoder (no reset artefacts at fragment
    boundaries, as there are when each fragment is decoded alone). ``decode(frag)`` → (pcm at ``rate``, t0)."""

    def __init__(self, rate: int = STT_RATE):
        self.rate = rate
        self._dec = None
        self._rs = None

    def decode(self, frag: Fragment) -> tuple[np.ndarray, float]:
        if self._dec is None:
            self._dec = av.CodecContext.create("libopus" if frag.codec == "opus" else frag.codec, "r")
            self._dec.sample_rate = int(frag.codec_info.get("sample_rate", OPUS_RATE))
            self._dec.layout = "mono" if int(frag.codec_info.get("channels", 1)) == 1 else "stereo"
            self._rs = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        chunks = []
        for _, data in _opus_packets([frag]):
            try:
                frames = self._dec.decode(av.Packet(data))
            except av.error.FFmpegError:
                continue
            for fr in frames:
                for r in self._rs.resample(fr):
                    chunks.append(r.to_ndarray().reshape(-1))
        pcm = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return pcm, frag.t0
