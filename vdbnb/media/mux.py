"""Server: write an MP4 from stored fragments. :func:`mux_mp4` — video fragments (H.264 and VP9 copied, no
re-encode; VP8, which MP4 cannot carry, re-encoded to H.264 as it is read) + audio fragment lists (decoded, mixed, encoded once to AAC) -> one MP4 whose duration equals wall time
(video gaps freeze the last frame, audio gaps are silence), streamed: fragments are read as the output
reaches their time, so memory does not grow with the length of the range. :func:`probe_duration` reads a
container's length."""
from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import av
import numpy as np

from .decode import AudioTimeline, as_list, iter_fragments
from .formats import OPUS_RATE, h264_extradata
from .fragments import Fragment

MS = fractions.Fraction(1, 1000)
WINDOW_S = 5.0   # audio is decoded, mixed and encoded this many seconds at a time, video muxed alongside


class _Track:
    """One channel's fragment list, read lazily; ``bounds()`` reads only its first and last fragments."""

    def __init__(self, items):
        self.items = as_list(items)
        if len(self.items) == 1 and not isinstance(self.items[0], (Fragment, bytes)) \
                and Path(self.items[0]).is_dir():
            self.items = sorted(Path(self.items[0]).glob("*.frag"))

    def __iter__(self) -> Iterator[Fragment]:
        return iter_fragments(self.items)

    def bounds(self) -> tuple[float, float] | None:
        if not self.items:
            return None
        if all(isinstance(x, Fragment) for x in self.items):
            return min(f.t0 for f in self.items), max(f.t1 for f in self.items)
        first = next(iter_fragments(self.items[:1]), None)
        last = next(iter_fragments(self.items[-1:]), None)
        if first is None or last is None:
            return None
        return min(first.t0, last.t0), max(first.t1, last.t1)


def _audio_lists(alists) -> list:
    if alists is None:
        return []
    if isinstance(alists, (str, os.PathLike)) or (alists and isinstance(alists[0], (Fragment, bytes))):
        return [alists]
    return list(alists)


def _video_packets(track: _Track, t_start: float, t_end: float) -> Iterator[tuple[float, bytes, bool]]:
    """(pts, bytes, key) of the packets to copy, in order: from the last keyframe at/before ``t_start`` (the
    pictures before ``t_start`` are decoded but not shown: the MP4's edit list starts at ``t_start``) to the
    last packet before ``t_end``. A GOP missing a fragment is cut at the gap: its last good frame holds until
    the next keyframe, as it does across any gap."""
    pre: list[tuple[float, bytes, bool]] = []
    started = chain_ok = False
    last_seq = None
    for f in track:
        if f.gop_seq is None:
            chain_ok = True
        elif not (chain_ok and last_seq == f.seq - 1):
            chain_ok = False
        last_seq = f.seq
        if not chain_ok:
            continue
        for p, b in f.packet_bytes():
            pts, key = float(p["pts"]), bool(p.get("key"))
            if pts >= t_end:
                return
            if not started:
                if key:
                    pre = []
                if pts <= t_start + 1e-6:
                    if key or pre:
                        pre.append((pts, b, key))
                    continue
                if not pre and not key:
                    continue  # video began after t_start mid-GOP: wait for a keyframe
                started = True
                yield from pre
                pre = []
            yield pts, b, key
    if not started:
        yield from pre


def mux_mp4(out_path, video_fragments=None, audio_fragment_lists=None, start: float | None = None,
            end: float | None = None, progress: Callable[[float], None] | None = None,
            audio_bitrate: int = 96000) -> dict[str, Any]:
    """Write one MP4: the H.264 packets copied (no re-encode) and every audio list decoded, mixed into one
    AAC track. Duration equals wall time from ``start`` to ``end`` (default: the union of all fragments):
    a video gap shows the last frame (the sample before it lasts through the gap), an audio gap is silence.
    The first picture is the one on screen at ``start`` even when its GOP began earlier (frame-exact clips).

    ``video_fragments``: fragments/paths/dir of one video channel (or None for an audio-only asset).
    ``audio_fragment_lists``: list of fragment lists, one per audio channel (or a single list/dir).
    Paths are read one at a time, in the order given (seq order). ``progress(fraction)`` is called as work
    proceeds. Returns a summary dict.
    """
    vtrack = _Track(video_fragments) if video_fragments is not None else None
    atracks = [t for t in (_Track(a) for a in _audio_lists(audio_fragment_lists)) if t.items]
    t_start, t_end = _time_range(vtrack, atracks, start, end)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".part")
    summary: dict[str, Any] = {"path": str(out_path), "start": t_start, "end": t_end,
                               "duration": t_end - t_start, "video_packets": 0, "audio_tracks": len(atracks)}
    oc = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        video = _VideoCopy(oc, vtrack, t_start, t_end) if vtrack else None
        audio = _AudioMix(oc, atracks, t_start, audio_bitrate) if atracks else None
        t = t_start
        while True:   # window by window, so that the file is interleaved and nothing accumulates
            t_win = min(t + WINDOW_S, t_end)
            if video is not None:
                video.copy_until(t_win)
            if audio is not None:
                audio.encode_until(t_win)
            if progress:
                progress(min(0.99, (t_win - t_start) / (t_end - t_start)))
            if t_win >= t_end:
                break
            t = t_win
        if audio is not None:
            summary["audio_samples"] = audio.finish()
        summary["video_packets"] = video.n if video is not None else 0
    finally:
        oc.close()
    os.replace(tmp, out_path)
    if progress:
        progress(1.0)
    return summary


def _time_range(vtrack, atracks, start, end) -> tuple[float, float]:
    bounds = [b for b in ([vtrack.bounds()] if vtrack else []) + [t.bounds() for t in atracks] if b]
    if not bounds:
        raise ValueError("mux_mp4: no fragments to export")
    t_start = min(b[0] for b in bounds) if start is None else float(start)
    t_end = max(b[1] for b in bounds) if end is None else float(end)
    if t_end <= t_start:
        raise ValueError(f"mux_mp4: empty time range {t_start}..{t_end}")
    return t_start, t_end


class _VideoCopy:
    """The video track: H.264 packets copied in order; each lasts until the next (gaps freeze)."""

    def __init__(self, oc, track: _Track, t_start: float, t_end: float):
        self.t_start, self.end_ms = t_start, int(round((t_end - t_start) * 1000))
        self.first = next(iter(track), None)
        self.codec = self.first.codec if self.first is not None else "h264"
        if self.codec == "vp8":   # no VP8 in MP4: the channel goes through the recorder's H.264 encoder
            track, self.codec = _AsH264(track), "h264"
        self.pk = _video_packets(track, t_start, t_end)
        self.held = next(self.pk, None)   # a packet waits for the next one: its duration runs up to it
        self.last_ms: int | None = None
        self.n = 0
        self.vs = None
        if self.held is not None:
            ci = self.first.codec_info
            self.vs = vs = oc.add_stream(self.codec)
            vs.codec_context.width = int(ci.get("width", 0)) or 1920
            vs.codec_context.height = int(ci.get("height", 0)) or 1080
            if self.codec == "h264":
                vs.codec_context.extradata = h264_extradata(self.held[1])
            vs.time_base = MS
            vs.codec_context.pix_fmt = "yuv420p"
        self.oc = oc

    def copy_until(self, t: float) -> None:
        while self.held is not None and self.held[0] < t:
            nxt = next(self.pk, None)
            pts, data, key = self.held
            ms = int(round((pts - self.t_start) * 1000))
            if self.last_ms is not None and ms <= self.last_ms:
                ms = self.last_ms + 1
            nxt_ms = max(int(round((nxt[0] - self.t_start) * 1000)), ms + 1) if nxt else max(self.end_ms, ms + 1)
            if ms < 0 < nxt_ms:
                ms = 0  # the picture on screen at t_start: shown from the first instant
            pkt = av.Packet(data)
            pkt.stream = self.vs
            pkt.pts = pkt.dts = ms   # negative before t_start: decoded as references, cut by the edit list
            pkt.duration = nxt_ms - ms
            pkt.time_base = MS
            if key:
                pkt.is_keyframe = True
            self.oc.mux(pkt)
            self.n += 1
            self.last_ms, self.held = ms, nxt


class _AsH264:
    """A VP8 channel as H.264 fragments, re-encoded as the export reads them (streamed like any track)."""

    def __init__(self, track: _Track):
        self.track = track

    def __iter__(self) -> Iterator[Fragment]:
        from .decode import iter_video_frames
        from .encode import VideoEncoder
        from .fragmenter import Fragmenter
        enc = fr = None
        for pts, rgb in iter_video_frames(self.track.items):
            if enc is None:
                enc = VideoEncoder(rgb.shape[1], rgb.shape[0], fps=2.0)
                fr = Fragmenter("transcoded", "video", "h264", enc.codec_info)
            yield from fr.add(enc.encode(rgb, pts, fmt="rgb24"))
        if enc is not None:
            yield from fr.add(enc.flush())
            yield from fr.flush()


class _AudioMix:
    """The audio track: every channel decoded for the window only, mixed, encoded to AAC."""

    def __init__(self, oc, tracks: list[_Track], t_start: float, bitrate: int):
        self.oc, self.t_start = oc, t_start
        self.as_ = as_ = oc.add_stream("aac", rate=OPUS_RATE)
        as_.codec_context.layout = "mono"
        as_.codec_context.bit_rate = bitrate
        as_.codec_context.options = {"aac_coder": "fast"}   # half the CPU of "twoloop", measured
        as_.time_base = fractions.Fraction(1, OPUS_RATE)
        self.timelines = [AudioTimeline(iter(t), t_start, OPUS_RATE) for t in tracks]
        self.n = 0

    def encode_until(self, t: float) -> None:
        n_end = int(round((t - self.t_start) * OPUS_RATE))
        mix = None
        for tl in self.timelines:
            pcm = tl.take(n_end)
            mix = pcm if mix is None else mix + pcm
        mix = np.clip(mix, -1.0, 1.0).astype(np.float32)
        fr = av.AudioFrame.from_ndarray(mix.reshape(1, -1), format="flt", layout="mono")
        fr.sample_rate = OPUS_RATE
        fr.pts = self.n
        fr.time_base = fractions.Fraction(1, OPUS_RATE)
        for pkt in self.as_.encode(fr):
            self.oc.mux(pkt)
        self.n += len(mix)

    def finish(self) -> int:
        for pkt in self.as_.encode(None):
            self.oc.mux(pkt)
        return self.n


def probe_duration(path) -> float:
    """Container duration in seconds (helper for tests and the export route)."""
    with av.open(str(path)) as c:
        return float(c.duration / av.time_base) if c.duration else 0.0
