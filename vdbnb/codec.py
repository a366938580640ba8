"""Encode once (recorder), decode and mux (server). Shared by ``vdbnb.recorder`` and ``vdbnb.server``.

Recorder side:
- :class:`VideoEncoder` — H.264 (libx264, ultrafast + zerolatency, CRF, no B-frames, Annex-B with SPS/PPS
  repeated before every keyframe), a keyframe at least every ``gop_s`` seconds, optional downscale.
- :class:`AudioEncoder` — Opus 48 kHz (mono default), VBR tuned for speech, 20 ms packets.
- :class:`Fragmenter` — groups packets into fragments per docs/ingest.md (video: one GOP ≤ 2 s starting with
  a keyframe; audio: ≤ 0.5 s), numbering them from 0 without gaps.

All timestamps are epoch seconds on the recorder's one clock.

Server side:
- :func:`decode_audio` — fragments → (float32 mono PCM at 16 kHz, t0) with gaps filled with silence.
- :func:`iter_video_frames` — fragments → (pts, RGB ndarray).
- :func:`mux_mp4` — video fragments (H.264 copied, no re-encode) + audio fragment lists (decoded, mixed,
  encoded once to AAC) → one MP4 whose duration equals wall time (video gaps freeze the last frame, audio gaps
  are silence).
"""
from __future__ import annotations

import fractions
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import av
import numpy as np

from vdbnb.fragments import Fragment, FragmentError, unpack

OPUS_RATE = 48000
MS = fractions.Fraction(1, 1000)
STT_RATE = 16000


# ------------------------------------------------------------------------------------------------
# encoders
# ------------------------------------------------------------------------------------------------
@dataclass
class Packet:
    data: bytes
    pts: float          # epoch seconds
    dur: float
    key: bool


class VideoEncoder:
    """H.264 screen encoder. ``encode(bgra, pts)`` → list of :class:`Packet` (zero-latency: 0 or 1 packet)."""

    def __init__(self, width: int, height: int, fps: float = 2.0, crf: int = 32, gop_s: float = 2.0,
                 scale: float | None = None, max_width: int | None = None, preset: str = "veryfast",
                 threads: int = 1):
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
        # screen content: no B-frames, no lookahead; keyframes are forced by us (pict_type I) so that a GOP
        # never exceeds gop_s whatever the real capture rate; scenecut off keeps GOPs = fragments.
        ctx.options = {"preset": preset, "tune": "zerolatency", "crf": str(crf),
                       "x264-params": "scenecut=0:keyint=1000:min-keyint=1000:bframes=0:repeat-headers=1:ipratio=1.1"}
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
    """Opus encoder fed with float32 PCM at 48 kHz; ``push(pcm, t_first_sample)`` → packets (20 ms each).

    Defaults (measured on speech, see bench/bench_recorder.py): 12 kb/s VBR "voip", 60 ms packets — per-packet
    header bytes dominate at 20 ms (50 packet entries per second of JSON).
    Timestamps follow the sample count from the first pushed sample; the caller re-anchors (``reset_clock``)
    after a capture discontinuity.
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
        self.n = ctx.frame_size or OPUS_RATE * frame_ms // 1000
        self._buf = np.zeros((0, channels), np.float32)
        self._t0: float | None = None        # epoch of the first sample of the encoder's sample counter
        self._samples = 0                    # samples given to the encoder
        self._offset = 0                     # pts offset (samples) for the current anchor

    def push(self, pcm: np.ndarray, t: float) -> list[Packet]:
        pcm = np.asarray(pcm, np.float32)
        if pcm.ndim == 1:
            pcm = pcm[:, None]
        if pcm.shape[1] != self.channels:
            pcm = pcm.mean(axis=1, keepdims=True) if self.channels == 1 else np.repeat(pcm[:, :1], 2, axis=1)
        if self._t0 is None:
            self._t0 = t
        else:
            # the encoder's clock of the next buffered sample vs the capture clock: re-align on drift > 40 ms
            expected = self._t0 + (self._samples + len(self._buf)) / OPUS_RATE
            if abs(expected - t) > 0.04:
                gap = t - expected
                if gap > 0:  # samples were lost upstream: fill honest silence so pts stay continuous
                    fill = min(int(gap * OPUS_RATE), OPUS_RATE * 5)
                    self._buf = np.concatenate([self._buf, np.zeros((fill, self.channels), np.float32)])
                    if gap > 5:
                        self._t0 += gap - 5
                else:  # capture clock ran behind: move the anchor
                    self._t0 += gap
        if not len(self._buf) and len(pcm) == self.n:  # aligned pushes: no copying
            return self._encode(pcm)
        self._buf = np.concatenate([self._buf, pcm])
        out: list[Packet] = []
        while len(self._buf) >= self.n:
            chunk, self._buf = self._buf[:self.n], self._buf[self.n:]
            out += self._encode(chunk)
        return out

    def _encode(self, chunk: np.ndarray) -> list[Packet]:
        s16 = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).T.copy(order="C")
        if self.channels == 2:
            s16 = s16.T.reshape(1, -1)
        f = av.AudioFrame.from_ndarray(s16, format="s16", layout=self.ctx.layout.name)
        f.sample_rate = OPUS_RATE
        f.pts = self._samples
        self._samples += len(chunk)
        return self._wrap(self.ctx.encode(f))

    def flush(self) -> list[Packet]:
        out: list[Packet] = []
        if len(self._buf):
            pad = np.zeros((self.n - len(self._buf), self.channels), np.float32)
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


class Fragmenter:
    """Groups packets into :class:`Fragment` s. Video: a new fragment at every keyframe (one GOP each);
    audio: a new fragment when adding a packet would exceed ``max_s`` (0.5 s) or when the packet does not
    follow the previous one in time."""

    def __init__(self, channel_id: str, kind: str, codec: str, codec_info: dict, start_seq: int = 0,
                 max_s: float = 0.5):
        self.channel_id, self.kind, self.codec, self.codec_info = channel_id, kind, codec, codec_info
        self.seq = start_seq
        self.max_s = max_s
        self.compact = True
        self.info_every = 40
        self._n_cut = 0
        self._pk: list[Packet] = []
        self._meta: dict[str, Any] = {}

    def add(self, pkts: Iterable[Packet], meta: dict | None = None) -> list[Fragment]:
        out: list[Fragment] = []
        for p in pkts:
            if self._pk:
                if self.kind == "video" and p.key:
                    out.append(self._cut())
                elif self.kind == "audio" and ((p.pts + p.dur) - self._pk[0].pts > self.max_s + 1e-6
                                               or abs(p.pts - (self._pk[-1].pts + self._pk[-1].dur))
                                               > p.dur / 2):
                    # an audio fragment is one continuous run: its packets must fill t0..t1 (check_media),
                    # so a jump in time (the device dropped samples and the clock was re-anchored) starts
                    # a new fragment instead of making this one unacceptable to the server
                    out.append(self._cut())
            if self.kind == "video" and not self._pk and not p.key:
                continue  # a fragment must start with a keyframe (cannot happen with our encoder)
            self._pk.append(p)
        if meta:
            self._meta.update(meta)
        return out

    def flush(self) -> list[Fragment]:
        return [self._cut()] if self._pk else []

    def tick(self, now: float, gop_s: float) -> list[Fragment]:
        """Video with skipped (unchanged) frames: close the open GOP once it spans ``gop_s`` so that it does
        not wait for the next change; its t1 is ``now`` (the screen was verified unchanged until then)."""
        if self._pk and now - self._pk[0].pts >= gop_s - 1e-6:
            return [self._cut(t1=now)]
        return []

    def _cut(self, t1: float | None = None) -> Fragment:
        pk, self._pk = self._pk, []
        t0 = pk[0].pts
        if t1 is None:
            t1 = max(p.pts + p.dur for p in pk)
            if self.kind == "video":
                t1 = min(t1, pk[-1].pts + self.codec_info.get("gop_s", 2.0))
        t1 = max(t1, t0)
        if self.kind == "audio" and self.compact:
            # audio packets are all keyframes of codec_info["frame_ms"]: pts and size say everything
            packets = [{"pts": round(p.pts, 4), "size": len(p.data)} for p in pk]
        else:
            packets = [{"pts": round(p.pts, 4), "dur": round(p.dur, 4), "size": len(p.data), "key": p.key}
                       for p in pk]
        # codec_info: on every video fragment; on audio every `info_every` fragments and the first of a run
        # (the header outweighs a 0.25 s Opus payload 4:1 otherwise; decoders default to 48 kHz mono)
        with_info = self.kind == "video" or self._n_cut % self.info_every == 0
        self._n_cut += 1
        frag = Fragment(channel_id=self.channel_id, seq=self.seq, kind=self.kind, codec=self.codec,
                        t0=round(t0, 4), t1=round(t1, 4), packets=packets,
                        payload=b"".join(p.data for p in pk),
                        codec_info={k: v for k, v in self.codec_info.items() if k != "gop_s"} if with_info else {},
                        meta=dict(self._meta))
        self._meta = {}
        self.seq += 1
        return frag


# ------------------------------------------------------------------------------------------------
# reading fragments
# ------------------------------------------------------------------------------------------------
FragLike = "Fragment | bytes | str | os.PathLike"


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


def _as_list(x) -> list:
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
    frags = load_fragments(_as_list(fragments))
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
    frags = load_fragments(_as_list(fragments))
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


def _split_annexb(data: bytes) -> list[bytes]:
    """NAL units (without start codes) of an Annex-B buffer."""
    out, i, n = [], 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:e]
        while nal.endswith(b"\x00") and k + 1 < len(starts):
            nal = nal[:-1]
        out.append(nal)
    return out


def _h264_extradata(keyframe: bytes) -> bytes:
    nals = [n for n in _split_annexb(keyframe) if n and (n[0] & 0x1F) in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


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
    vfr = load_fragments(_as_list(video_fragments)) if video_fragments is not None else []
    alists = audio_fragment_lists
    if alists is None:
        alists = []
    elif isinstance(alists, (str, os.PathLike)) or (alists and isinstance(alists[0], (Fragment, bytes))):
        alists = [alists]
    afr = [load_fragments(_as_list(a)) for a in alists]
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
            vs.codec_context.extradata = _h264_extradata(vpk[0][1])
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


def check_media(frag: Fragment) -> None:
    """Cheap checks that a fragment's packets are what its header says (ingest calls this before storing):
    H.264 as Annex-B NAL units whose first packet is a keyframe carrying SPS+PPS; Opus packets that the
    decoder accepts. Raises FragmentError("BAD_MEDIA", why)."""
    if not frag.packets:
        raise FragmentError("BAD_MEDIA", "fragment has no packets")
    if frag.kind == "video":
        if frag.codec != "h264":
            raise FragmentError("BAD_MEDIA", f"video codec {frag.codec!r} is not supported (h264)")
        first = None
        for i, (p, data) in enumerate(frag.packet_bytes()):
            nals = _split_annexb(data)
            if not nals or not (data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")):
                raise FragmentError("BAD_MEDIA", f"video packet {i} is not H.264 Annex-B (no start code)")
            for n in nals:
                if not n or n[0] & 0x80:
                    raise FragmentError("BAD_MEDIA", f"video packet {i} has an invalid NAL unit header")
            if i == 0:
                first = {n[0] & 0x1F for n in nals if n}
        if not first or not {7, 8, 5} <= first:
            raise FragmentError("BAD_MEDIA", "a video fragment must start with a keyframe carrying SPS and PPS")
        return
    if frag.codec != "opus":
        raise FragmentError("BAD_MEDIA", f"audio codec {frag.codec!r} is not supported (opus)")
    # Opus accepts almost any bytes, so check structure (RFC 6716 §3.1): every packet's TOC gives the same
    # duration, the one the header declares (frame_ms), and together they span the fragment's t0..t1.
    durs = []
    for i, (_, data) in enumerate(frag.packet_bytes()):
        d = opus_packet_ms(data)
        if d is None:
            raise FragmentError("BAD_MEDIA", f"audio packet {i} is not a valid Opus packet")
        durs.append(d)
    want = frag.codec_info.get("frame_ms")
    if len(set(durs)) != 1 or (want and abs(durs[0] - float(want)) > 0.01):
        raise FragmentError("BAD_MEDIA", f"Opus packet durations {sorted(set(durs))} ms do not match the "
                            f"stream's frame size {want or durs[0]} ms")
    span = (frag.t1 - frag.t0) * 1000
    if abs(sum(durs) - span) > durs[0] + 1:
        raise FragmentError("BAD_MEDIA", f"packets hold {sum(durs):.0f} ms of audio but the header says "
                            f"{span:.0f} ms (t0..t1)")


def opus_packet_ms(data: bytes) -> float | None:
    """Duration in ms of one Opus packet from its TOC byte (RFC 6716 §3.1), or None if malformed."""
    if not data:
        return None
    toc = data[0]
    config, code = toc >> 3, toc & 3
    if config < 12:
        size = (10, 20, 40, 60)[config % 4]
    elif config < 16:
        size = (10, 20)[config % 2]
    else:
        size = (2.5, 5, 10, 20)[config % 4]
    if code == 0:
        n = 1
    elif code in (1, 2):
        n = 2
        if code == 1 and (len(data) - 1) % 2:
            return None
    else:
        if len(data) < 2:
            return None
        n = data[1] & 0x3F
        if n == 0:
            return None
    total = n * size
    return total if total <= 120 else None
