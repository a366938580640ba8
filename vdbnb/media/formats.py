"""Facts of the two codecs on the wire, read from the bytes alone (no decoder): the Opus sample rate, an Opus
packet's duration from its TOC byte, H.264 Annex-B NAL units and the SPS/PPS that an MP4 needs as extradata.
Used by ingest validation (:mod:`.check`), the muxer (:mod:`.mux`) and the encoders/decoders for the rate."""
from __future__ import annotations

OPUS_RATE = 48000


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
