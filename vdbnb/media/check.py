"""Server ingest: cheap checks that a fragment's packets are what its header says, before it is stored.
Reads bytes only (no decoder): H.264 Annex-B structure, VP8/VP9 frame headers, Opus TOC durations against
t0..t1."""
from __future__ import annotations

from .formats import VIDEO_CODECS, opus_packet_ms, split_annexb, video_frame_is_key
from .fragments import Fragment, FragmentError


def check_media(frag: Fragment) -> None:
    """Cheap checks that a fragment's packets are what its header says (ingest calls this before storing):
    H.264 as Annex-B NAL units whose first packet is a keyframe carrying SPS+PPS — unless the fragment
    continues a GOP opened by an earlier fragment (``gop_seq``), when it must not hold a keyframe at all;
    VP8/VP9 frames under the same rule (the browser recorder's); Opus packets that the decoder accepts.
    Raises FragmentError("BAD_MEDIA", why)."""
    if not frag.packets:
        raise FragmentError("BAD_MEDIA", "fragment has no packets")
    if frag.kind == "video":
        if frag.codec not in VIDEO_CODECS:
            raise FragmentError("BAD_MEDIA", f"video codec {frag.codec!r} is not supported "
                                f"({', '.join(VIDEO_CODECS)})")
        if frag.codec != "h264":
            return _check_vpx(frag)
        first = None
        for i, (p, data) in enumerate(frag.packet_bytes()):
            nals = split_annexb(data)
            if not nals or not (data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")):
                raise FragmentError("BAD_MEDIA", f"video packet {i} is not H.264 Annex-B (no start code)")
            for n in nals:
                if not n or n[0] & 0x80:
                    raise FragmentError("BAD_MEDIA", f"video packet {i} has an invalid NAL unit header")
            if i == 0:
                first = {n[0] & 0x1F for n in nals if n}
        if frag.gop_seq is not None:
            if any(p.get("key") for p in frag.packets) or (first and 5 in first):
                raise FragmentError("BAD_MEDIA", f"fragment {frag.seq} continues the GOP of fragment "
                                    f"{frag.gop_seq} but holds a keyframe: a keyframe starts a new GOP")
            return
        if not first or not {7, 8, 5} <= first:
            raise FragmentError("BAD_MEDIA", "a video fragment must start with a keyframe carrying SPS and PPS "
                                "(or name the fragment whose keyframe it continues in gop_seq)")
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


def _check_vpx(frag: Fragment) -> None:
    name = frag.codec.upper()
    keys = []
    for i, (_, data) in enumerate(frag.packet_bytes()):
        key = video_frame_is_key(frag.codec, data)
        if key is None:
            raise FragmentError("BAD_MEDIA", f"video packet {i} is not a {name} frame")
        keys.append(key)
    if frag.gop_seq is not None:
        if any(keys):
            raise FragmentError("BAD_MEDIA", f"fragment {frag.seq} continues the GOP of fragment {frag.gop_seq} "
                                "but holds a keyframe: a keyframe starts a new GOP")
    elif not keys[0]:
        raise FragmentError("BAD_MEDIA", f"a video fragment must start with a keyframe ({name} packet 0 is an "
                            "interframe), or name the fragment whose keyframe it continues in gop_seq")
