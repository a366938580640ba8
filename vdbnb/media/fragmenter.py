"""Recorder: group encoded packets into numbered fragments per docs/ingest.md (video: <= ``max_s`` (2 s) of
one GOP — a fragment that opens a GOP starts with its keyframe, the following ones continue it and name it in
``gop_seq``; audio: one continuous run <= 0.5 s), numbered from ``start_seq`` without gaps."""
from __future__ import annotations

from typing import Any, Iterable

from .encode import Packet
from .fragments import Fragment


class Fragmenter:
    """Groups packets into :class:`Fragment` s. Video: a new fragment at every keyframe, and one that continues
    the GOP when adding a packet would make the open fragment span more than ``max_s`` (a GOP may last a
    minute; fragments stay short so that the server sees the screen within ~``max_s``); audio: a new fragment
    when adding a packet would exceed ``max_s`` (0.5 s) or when the packet does not follow the previous one in
    time."""

    def __init__(self, channel_id: str, kind: str, codec: str, codec_info: dict, start_seq: int = 0,
                 max_s: float | None = None):
        self.channel_id, self.kind, self.codec, self.codec_info = channel_id, kind, codec, codec_info
        self.seq = start_seq
        self.max_s = float(max_s) if max_s else (2.0 if kind == "video" else 0.5)
        self.compact = True
        self.info_every = 40
        self._n_cut = 0
        self._pk: list[Packet] = []
        self._meta: dict[str, Any] = {}
        self._gop: int | None = None   # video: seq of the fragment holding the open GOP's keyframe

    def add(self, pkts: Iterable[Packet], meta: dict | None = None) -> list[Fragment]:
        out: list[Fragment] = []
        for p in pkts:
            if self._pk:
                if self.kind == "video" and (p.key or (p.pts + p.dur) - self._pk[0].pts > self.max_s + 1e-6):
                    out.append(self._cut())
                elif self.kind == "audio" and ((p.pts + p.dur) - self._pk[0].pts > self.max_s + 1e-6
                                               or abs(p.pts - (self._pk[-1].pts + self._pk[-1].dur))
                                               > p.dur / 2):
                    # an audio fragment is one continuous run: its packets must fill t0..t1 (check_media),
                    # so a jump in time (the device dropped samples and the clock was re-anchored) starts
                    # a new fragment instead of making this one unacceptable to the server
                    out.append(self._cut())
            if self.kind == "video" and not self._pk:
                if p.key:
                    self._gop = self.seq
                elif self._gop is None:
                    continue  # a GOP must start with a keyframe (cannot happen with our encoder)
            self._pk.append(p)
            if self.kind == "audio" and (p.pts + 2 * p.dur) - self._pk[0].pts > self.max_s + 1e-6:
                # full: the next packet would not fit, so cut now instead of when it arrives (a chunk of
                # several packets would otherwise hold a finished fragment back until the next chunk)
                out.append(self._cut())
        if meta:
            self._meta.update(meta)
        return out

    def flush(self) -> list[Fragment]:
        return [self._cut()] if self._pk else []

    def tick(self, now: float) -> list[Fragment]:
        """Video with skipped (unchanged) frames: close the open fragment once it spans ``max_s`` so that it
        does not wait for the next change; its t1 is ``now`` (the screen was verified unchanged until then).
        The GOP stays open: the next change is a P-frame in a fragment that continues it."""
        if self._pk and now - self._pk[0].pts >= self.max_s - 1e-6:
            return [self._cut(t1=now)]
        return []

    def _cut(self, t1: float | None = None) -> Fragment:
        pk, self._pk = self._pk, []
        t0 = pk[0].pts
        if t1 is None:
            t1 = max(p.pts + p.dur for p in pk)
            if self.kind == "video":
                t1 = min(t1, pk[-1].pts + self.max_s)
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
                        codec_info=dict(self.codec_info) if with_info else {}, meta=dict(self._meta),
                        gop_seq=self._gop if self.kind == "video" and self._gop != self.seq else None)
        self._meta = {}
        self.seq += 1
        return frag
