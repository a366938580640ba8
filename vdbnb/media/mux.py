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
    vfr = load_fragments(as_list(video_fragments)) if video_fragments is not None else []
    alists = audio_fragment_lists
    if alists is None:
        alists = []
    elif isinstance(alists, (str, os.PathLike)) or (alists and isinstance(alists[0], (Fragment, bytes))):
        alists = [alists]
    afr = [load_fragments(as_list(a)) for a in alists]
    afr = [a for a in afr if a]
    all_frags = vfr + [f for a in afr for f in a]
    if not all_frags:
        raise ValueError("mux_mp4: no fragments to export")
    t_start = min(f.t0 for f in all_frags) if start is None else float(start)
    t_end = max(f.t1 for f in all_frags) if end is None else float(end)
    if t_end <= t_start:
        raise ValueError(f"mux_mp4: empty time range {t_start}..{t_end}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".part")
    summary: dict[str, Any] = {"path": str(out_path), "start": t_start, "end": t_end,
                               "duration": t_end - t_start, "video_packets": 0, "audio_tracks": len(afr)}
    oc = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        vs = None
        vpk: list[tuple[float, bytes, bool]] = []
        if vfr:
            for f in vfr:
                for p, b in f.packet_bytes():
                    vpk.append((float(p["pts"]), b, bool(p.get("key"))))
            vpk.sort(key=lambda x: x[0])
            # keep from the last keyframe at/before start to the last packet before end
            first = 0
            for i, (pts, _b, key) in enumerate(vpk):
                if key and pts <= t_start + 1e-6:
                    first = i
            if not any(k for _p, _b, k in vpk[first:first + 1]):
                first = next((i for i, x in enumerate(vpk) if x[2]), len(vpk))
            vpk = [x for x in vpk[first:] if x[0] < t_end]
        if vpk:
            ci = vfr[0].codec_info
            vs = oc.add_stream("h264")
            vs.codec_context.width = int(ci.get("width", 0)) or 1920
            vs.codec_context.height = int(ci.get("height", 0)) or 1080
            vs.codec_context.extradata = h264_extradata(vpk[0][1])
            vs.time_base = fractions.Fraction(1, 1000)
            vs.codec_context.pix_fmt = "yuv420p"
        as_ = None
        if afr:
            as_ = oc.add_stream("aac", rate=OPUS_RATE)
            as_.codec_context.layout = "mono"
            as_.codec_context.bit_rate = audio_bitrate
            as_.time_base = fractions.Fraction(1, OPUS_RATE)
        # --- video: copy packets, durations stretch across gaps (freeze) and to end -----------------
        if vs is not None:
            n = len(vpk)
            # ms on the export timeline; packets before start (from the GOP's keyframe) are squeezed to
            # 1 ms each at 0 so that the frame shown at `start` is the one that was on screen then
            mss_: list[int] = []
            for pts, _d, _k in vpk:
                ms = int(round((pts - t_start) * 1000))
                if mss_ and ms <= mss_[-1]:
                    ms = mss_[-1] + 1
                mss_.append(max(ms, 0) if not mss_ else ms)
            end_ms = max(int(round((t_end - t_start) * 1000)), mss_[-1] + 1)
            for i, (pts, data, key) in enumerate(vpk):
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
                    progress(0.5 * i / max(n, 1) if afr else i / max(n, 1))
            summary["video_packets"] = n
        # --- audio: decode each channel on the wall clock, mix, encode AAC once ---------------------
        if as_ is not None:
            mix = None
            for k, a in enumerate(afr):
                pcm, _ = decode_audio_native(a, rate=OPUS_RATE, start=t_start, end=t_end)
                mix = pcm if mix is None else mix[:len(pcm)] + pcm[:len(mix)]
                if progress:
                    progress(0.5 + 0.3 * (k + 1) / len(afr) if vs is not None else 0.8 * (k + 1) / len(afr))
            mix = np.clip(mix, -1.0, 1.0).astype(np.float32)
            fs = as_.codec_context.frame_size or 1024
            total = len(mix)
            for off in range(0, total, fs * 16):
                chunk = mix[off:off + fs * 16]
                fr = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                fr.sample_rate = OPUS_RATE
                fr.pts = off
                fr.time_base = fractions.Fraction(1, OPUS_RATE)
                for pkt in as_.encode(fr):
                    oc.mux(pkt)
            for pkt in as_.encode(None):
                oc.mux(pkt)
            summary["audio_samples"] = total
    finally:
        oc.close()
    os.replace(tmp, out_path)
    if progress:
        progress(1.0)
    return summary


def probe_duration(path) -> float:
    """Container duration in seconds (helper for tests and the export route)."""
    with av.open(str(path)) as c:
        return float(c.duration / av.time_base) if c.duration else 0.0
