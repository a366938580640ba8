"""Server: read stored fragments back. :func:`load_fragments` (objects, packed bytes, ``.frag`` paths or a
directory, all in memory) and :func:`iter_fragments` (the same, one at a time); :func:`decode_audio` — audio
fragments -> (float32 mono PCM at 16 kHz, t0), gaps filled with silence; :class:`AudioStreamDecoder` — one
channel's fragments in order through one decoder (live STT); :class:`AudioTimeline` — a channel's fragments
as consecutive windows of wall-clock PCM, decoded as they are asked for (exports); :class:`VideoStreamDecoder`
and :func:`iter_video_frames` — video fragments -> (pts, RGB ndarray), GOPs that span fragments included."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

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


def iter_fragments(items: Iterable[Any]) -> Iterator[Fragment]:
    """Like :func:`load_fragments` but one fragment in memory at a time: paths are read in the order given (a
    directory in file-name order, which is seq order for stored fragments), objects and bytes sorted by seq;
    a seq not above the previous one (a duplicate) is skipped."""
    items = list(items)
    if items and all(isinstance(it, (Fragment, bytes, bytearray, memoryview)) for it in items):
        yield from load_fragments(items)
        return
    last = None
    for it in items:
        if isinstance(it, (Fragment, bytes, bytearray, memoryview)):
            fs = load_fragments([it])
        elif Path(it).is_dir():
            yield from iter_fragments(sorted(Path(it).glob("*.frag")))
            continue
        else:
            fs = [unpack(Path(it).read_bytes())]
        for f in fs:
            if last is None or f.seq > last:
                last = f.seq
                yield f


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


class VideoStreamDecoder:
    """One video channel's fragments in order through ONE decoder, so that a fragment continuing a GOP
    (``gop_seq``) decodes on the pictures its predecessors left. A continuation whose predecessor was not
    decoded here (a start mid-GOP, or a lost fragment) is primed from its GOP's earlier fragments through
    ``load(first_seq, last_seq) -> [Fragment]`` when given; otherwise (or if they are not all there) it is
    skipped, as is the rest of its GOP: frames are never shown decoded on the wrong pictures."""

    def __init__(self, load: Callable[[int, int], list[Fragment]] | None = None):
        self.load = load
        self._dec = None
        self._last: int | None = None

    @staticmethod
    def _new(codec: str = "h264"):
        dec = av.CodecContext.create(codec, "r")   # h264, vp8 or vp9 (check_media lets nothing else in)
        dec.thread_count = 1  # no frame threads: a packet's picture comes out at once (no flush between fragments)
        return dec

    def _prime(self, frag: Fragment) -> bool:
        prior = self.load(frag.gop_seq, frag.seq - 1) if self.load else []
        if [f.seq for f in prior] != list(range(frag.gop_seq, frag.seq)) or prior[0].gop_seq is not None:
            return False
        self._dec = self._new(prior[0].codec)
        for f in prior:
            for _frame in self._run(f):
                pass
        return self._dec is not None

    def frames(self, frag: Fragment, fmt: str = "rgb24", width: int | None = None,
               height: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
        if frag.gop_seq is None:
            self._dec = self._new(frag.codec)
        elif self._dec is None or self._last != frag.seq - 1:
            self._dec = None
            if not self._prime(frag):
                self._last = None
                return
        for pts, fr in self._run(frag):
            if width or height:
                fr = fr.reformat(width=width or fr.width, height=height or fr.height)
            yield pts, fr.to_ndarray(format=fmt)

    def _run(self, frag: Fragment) -> Iterator[tuple[float, av.VideoFrame]]:
        for p, b in frag.packet_bytes():
            try:
                out = self._dec.decode(av.Packet(b))
            except av.error.FFmpegError:
                self._dec, self._last = None, None  # broken: wait for the next keyframe
                return
            for fr in out:
                yield float(p["pts"]), fr
        self._last = frag.seq


def iter_video_frames(fragments, fmt: str = "rgb24", width: int | None = None,
                      height: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Decode video fragments → (pts epoch seconds, HxWx3 uint8 RGB), one fragment in memory at a time. A GOP
    that cannot be decoded whole (its keyframe's fragment or one in between is missing) is skipped until the
    next keyframe."""
    dec = VideoStreamDecoder()
    for f in iter_fragments(as_list(fragments)):
        yield from dec.frames(f, fmt, width, height)


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


def _mono_float(fr: av.AudioFrame, rate: int, rs: av.AudioResampler) -> np.ndarray:
    """A decoded frame as float32 mono at ``rate``; mono s16/flt at that rate is converted directly (as
    libswresample does, x/32768), sparing the resampler's per-frame cost on hours of audio."""
    if fr.sample_rate == rate and fr.layout.nb_channels == 1 and fr.format.name in ("s16", "flt"):
        a = fr.to_ndarray().reshape(-1)
        return a.astype(np.float32) / 32768.0 if fr.format.name == "s16" else a
    return np.concatenate([r.to_ndarray().reshape(-1) for r in rs.resample(fr)] or [np.zeros(0, np.float32)])


class AudioTimeline:
    """One audio channel as wall-clock PCM, window after window: ``take(n_end)`` returns the samples from where
    the last call stopped up to sample ``n_end`` (counted from ``t0`` at ``rate``), decoding only the packets
    that fall there — a channel-hour never sits in memory. Gaps are silence; a packet is placed by its capture
    pts, as :func:`decode_audio_native` does."""

    def __init__(self, fragments: Iterable[Fragment], t0: float, rate: int = OPUS_RATE):
        self.t0, self.rate = t0, rate
        self._gen = self._decoded(iter(fragments))
        self._next: tuple[int, np.ndarray] | None = None
        self._carry = np.zeros(0, np.float32)   # samples from self.pos on, decoded already
        self.pos = 0

    def _decoded(self, frags: Iterator[Fragment]) -> Iterator[tuple[int, np.ndarray]]:
        dec = rs = None
        for f in frags:
            if dec is None:
                dec = av.CodecContext.create("libopus" if f.codec == "opus" else f.codec, "r")
                dec.sample_rate = int(f.codec_info.get("sample_rate", OPUS_RATE))
                dec.layout = "mono" if int(f.codec_info.get("channels", 1)) == 1 else "stereo"
                rs = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            for p, data in f.packet_bytes():
                try:
                    frames = dec.decode(av.Packet(data))
                except av.error.FFmpegError:
                    continue
                chunks = [_mono_float(fr, self.rate, rs) for fr in frames]
                if chunks:
                    yield (int(round((float(p["pts"]) - self.t0) * self.rate)),
                           np.concatenate(chunks).astype(np.float32, copy=False))

    def take(self, n_end: int) -> np.ndarray:
        out = np.zeros(max(0, n_end - self.pos), np.float32)
        k = min(len(self._carry), len(out))
        out[:k] = self._carry[:k]
        self._carry = self._carry[k:]
        while True:
            item = self._next if self._next is not None else next(self._gen, None)
            self._next = None
            if item is None:
                break
            i0, pcm = item
            if i0 >= n_end:
                self._next = item
                break
            a, b = max(i0, self.pos), min(i0 + len(pcm), n_end)
            if b > a:
                out[a - self.pos:b - self.pos] = pcm[a - i0:b - i0]
            if i0 + len(pcm) > n_end:  # the tail belongs to the next window
                s0 = max(i0, n_end)
                need = i0 + len(pcm) - n_end
                if len(self._carry) < need:
                    self._carry = np.concatenate([self._carry, np.zeros(need - len(self._carry), np.float32)])
                self._carry[s0 - n_end:need] = pcm[s0 - i0:]
        self.pos = max(self.pos, n_end)
        return out
