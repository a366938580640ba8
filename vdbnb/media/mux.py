"""Server: write an MP4 from stored fragments. :func:`mux_mp4` — video fragments (H.264 copied, no re-encode)
+ audio fragment lists (decoded, mixed, encoded once to AAC) -> one MP4 whose duration equals wall time
(video gaps freeze the last frame, audio gaps are silence). :func:`probe_duration` reads a container's length."""
from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np

from .decode import as_list, decode_audio_native, load_fragments
from .formats import OPUS_RATE, h264_extradata
from .fragments import Fragment

MS = fractions.Fraction(1, 1000)


def mux_mp4(out_path, video_fragments=None, audio_fragment_lists=None, start: float | None = None,
            end: float | None = None, progress: Callable[[float], None] | None = None,
            audio_bitrate: int = 96000) -> dict[str, Any]:
    """Write one MP4: the H.264 packets copied (no re-encode) and every audio list decoded, mixed into one
    AAC track. Duration equals wall time from ``start`` to ``end`` (default: the union of all fragments):
    a video gap shows the last frame (the sample before it lasts through the gap), an audio gap is silence.

    ``video_fragments``: fragments/paths/dir of one video channel (or None for an audio-only asset).
    ``audio_fragment_lists``: list of fragment lists, one per audio channel (or a single list/dir).
    ``progress(fraction)`` is called as work proceeds. Returns a summary dict.
    """
    vfr, afr = _load(video_fragments, audio_fragment_lists)
    t_start, t_end = _time_range(vfr + [f for a in afr for f in a], start, end)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".part")
    summary: dict[str, Any] = {"path": str(out_path), "start": t_start, "end": t_end,
                               "duration": t_end - t_start, "video_packets": 0, "audio_tracks": len(afr)}
    vpk = _video_packets(vfr, t_start, t_end)
    oc = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        vs = _add_video_stream(oc, vfr[0].codec_info, vpk[0][1]) if vpk else None
        as_ = _add_audio_stream(oc, audio_bitrate) if afr else None
        if vs is not None:
            summary["video_packets"] = _mux_video(oc, vs, vpk, t_start, t_end, progress, bool(afr))
        if as_ is not None:
            summary["audio_samples"] = _mux_audio(oc, as_, afr, t_start, t_end, progress, vs is not None)
    finally:
        oc.close()
    os.replace(tmp, out_path)
    if progress:
        progress(1.0)
    return summary


def _load(video_fragments, audio_fragment_lists) -> tuple[list[Fragment], list[list[Fragment]]]:
    """The video channel's fragments and one non-empty fragment list per audio channel, each sorted by seq."""
    vfr = load_fragments(as_list(video_fragments)) if video_fragments is not None else []
    alists = audio_fragment_lists
    if alists is None:
        alists = []
    elif isinstance(alists, (str, os.PathLike)) or (alists and isinstance(alists[0], (Fragment, bytes))):
        alists = [alists]
    afr = [load_fragments(as_list(a)) for a in alists]
    return vfr, [a for a in afr if a]


def _time_range(frags: list[Fragment], start: float | None, end: float | None) -> tuple[float, float]:
    if not frags:
        raise ValueError("mux_mp4: no fragments to export")
    t_start = min(f.t0 for f in frags) if start is None else float(start)
    t_end = max(f.t1 for f in frags) if end is None else float(end)
    if t_end <= t_start:
        raise ValueError(f"mux_mp4: empty time range {t_start}..{t_end}")
    return t_start, t_end


def _video_packets(vfr: list[Fragment], t_start: float, t_end: float) -> list[tuple[float, bytes, bool]]:
    """(pts, bytes, key) from the last keyframe at/before ``t_start`` to the last packet before ``t_end``."""
    vpk = sorted(((float(p["pts"]), b, bool(p.get("key"))) for f in vfr for p, b in f.packet_bytes()),
                 key=lambda x: x[0])
    first = 0
    for i, (pts, _b, key) in enumerate(vpk):
        if key and pts <= t_start + 1e-6:
            first = i
    if not any(k for _p, _b, k in vpk[first:first + 1]):
        first = next((i for i, x in enumerate(vpk) if x[2]), len(vpk))
    return [x for x in vpk[first:] if x[0] < t_end]


def _add_video_stream(oc, codec_info: dict, keyframe: bytes):
    vs = oc.add_stream("h264")
    vs.codec_context.width = int(codec_info.get("width", 0)) or 1920
    vs.codec_context.height = int(codec_info.get("height", 0)) or 1080
    vs.codec_context.extradata = h264_extradata(keyframe)
    vs.time_base = fractions.Fraction(1, 1000)
    vs.codec_context.pix_fmt = "yuv420p"
    return vs


def _add_audio_stream(oc, bitrate: int):
    as_ = oc.add_stream("aac", rate=OPUS_RATE)
    as_.codec_context.layout = "mono"
    as_.codec_context.bit_rate = bitrate
    as_.time_base = fractions.Fraction(1, OPUS_RATE)
    return as_


def _export_ms(vpk: list[tuple[float, bytes, bool]], t_start: float) -> list[int]:
    """Each packet's time on the export timeline (ms, strictly increasing); packets before ``t_start`` (from
    the GOP's keyframe) are squeezed to 1 ms each at 0, so the frame shown at start is the one on screen then."""
    out: list[int] = []
    for pts, _d, _k in vpk:
        ms = int(round((pts - t_start) * 1000))
        if out and ms <= out[-1]:
            ms = out[-1] + 1
        out.append(max(ms, 0) if not out else ms)
    return out


def _mux_video(oc, vs, vpk, t_start: float, t_end: float, progress, with_audio: bool) -> int:
    """Copy the packets; each lasts until the next one (a gap freezes the last frame) and the last to ``t_end``."""
    n = len(vpk)
    mss_ = _export_ms(vpk, t_start)
    end_ms = max(int(round((t_end - t_start) * 1000)), mss_[-1] + 1)
    for i, (_pts, data, key) in enumerate(vpk):
        ms = mss_[i]
        nxt = mss_[i + 1] if i + 1 < n else end_ms
        pkt = av.Packet(data)
        pkt.stream = vs
        pkt.pts = pkt.dts = ms
        pkt.duration = max(1, nxt - ms)
        pkt.time_base = MS
        if key:
            pkt.is_keyframe = True
        oc.mux(pkt)
        if progress and i % 50 == 0:
            progress(0.5 * i / max(n, 1) if with_audio else i / max(n, 1))
    return n


def _mux_audio(oc, as_, afr, t_start: float, t_end: float, progress, with_video: bool) -> int:
    """Decode each channel on the wall clock (gaps are silence), mix, encode AAC once; returns the samples."""
    mix = None
    for k, a in enumerate(afr):
        pcm, _ = decode_audio_native(a, rate=OPUS_RATE, start=t_start, end=t_end)
        mix = pcm if mix is None else mix[:len(pcm)] + pcm[:len(mix)]
        if progress:
            progress(0.5 + 0.3 * (k + 1) / len(afr) if with_video else 0.8 * (k + 1) / len(afr))
    mix = np.clip(mix, -1.0, 1.0).astype(np.float32)
    fs = as_.codec_context.frame_size or 1024
    for off in range(0, len(mix), fs * 16):
        chunk = mix[off:off + fs * 16]
        fr = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        fr.sample_rate = OPUS_RATE
        fr.pts = off
        fr.time_base = fractions.Fraction(1, OPUS_RATE)
        for pkt in as_.encode(fr):
            oc.mux(pkt)
    for pkt in as_.encode(None):
        oc.mux(pkt)
    return len(mix)


def probe_duration(path) -> float:
    """Container duration in seconds (helper for tests and the export route)."""
    with av.open(str(path)) as c:
        return float(c.duration / av.time_base) if c.duration else 0.0
