"""Facts of the codecs on the wire, read from the bytes alone (no decoder): the Opus sample rate, an Opus
packet's duration from its TOC byte, H.264 Annex-B NAL units and the SPS/PPS that an MP4 needs as extradata,
and whether a VP8 / VP9 frame is a keyframe (the browser recorder sends those when it cannot encode H.264).
Used by ingest validation (:mod:`.check`), the muxer (:mod:`.mux`) and the encoders/decoders for the rate."""
from __future__ import annotations

OPUS_RATE = 48000
VIDEO_CODECS = ("h264", "vp8", "vp9")   # what ingest accepts for video; audio is always "opus"


def split_annexb(data: bytes) -> list[bytes]:
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


def h264_extradata(keyframe: bytes) -> bytes:
    nals = [n for n in split_annexb(keyframe) if n and (n[0] & 0x1F) in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


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


def vp8_frame_info(data: bytes) -> bool | None:
    """True for a VP8 keyframe, False for an interframe, None if ``data`` is not a VP8 frame (RFC 6386 §9.1:
    a 3-byte frame tag whose bit 0 is 0 on keyframes, which then carry the start code 9d 01 2a)."""
    if len(data) < 3:
        return None
    tag = data[0] | (data[1] << 8) | (data[2] << 16)
    if (tag >> 1) & 7 > 3:                       # version 0-3
        return None
    if tag & 1:
        return False
    return True if len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a" else None


def vp9_frame_info(data: bytes) -> bool | None:
    """True for a VP9 keyframe, False for another frame, None if ``data`` does not start with a VP9 frame header
    (VP9 bitstream spec §6.2: frame_marker 0b10, profile, show_existing_frame, frame_type 0 = key; a keyframe
    then carries the sync code 49 83 42). The first frame of a superframe decides."""
    if not data:
        return None
    b = data[0]
    if b >> 6 != 0b10:
        return None
    profile = ((b >> 5) & 1) | (((b >> 4) & 1) << 1)
    bit = 4                                     # bit index (from the MSB) after marker and profile bits
    if profile == 3:
        bit += 1                                # reserved zero
    def read(i: int) -> int:
        byte, off = divmod(i, 8)
        return (data[byte] >> (7 - off)) & 1 if byte < len(data) else 0
    if read(bit):                               # show_existing_frame: a repeat of a decoded frame
        return False
    key = read(bit + 1) == 0
    if not key:
        return False
    # after frame_type, show_frame and error_resilient_mode comes the 24-bit sync code (byte aligned only
    # for profiles 0-2)
    code = 0
    for i in range(24):
        code = (code << 1) | read(bit + 4 + i)
    return True if code == 0x498342 else None


def video_frame_is_key(codec: str, data: bytes) -> bool | None:
    """Keyframe test from the bytes for VP8/VP9 (None: not a frame of that codec). H.264 is checked by NAL type."""
    if codec == "vp8":
        return vp8_frame_info(data)
    if codec == "vp9":
        return vp9_frame_info(data)
    raise ValueError(f"no keyframe test for {codec!r}")
