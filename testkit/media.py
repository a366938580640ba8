"""Real media for tests and benches: fragments encoded by the recorder's own encoders (Opus, H.264), screen-like
images of text, a long stored session made fast."""
from __future__ import annotations

import time

import numpy as np


def audio_fragments(channel_id: str, seconds: float = 1.0, t0: float | None = None, freq: float = 440.0,
                    start_seq: int = 0):
    """Real Opus fragments of a tone, encoded by the recorder's own encoder."""
    from vdbnb.media.encode import AudioEncoder
    from vdbnb.media.fragmenter import Fragmenter
    t0 = t0 or time.time()
    enc = AudioEncoder()
    fr = Fragmenter(channel_id, "audio", "opus", enc.codec_info, start_seq=start_seq)
    n = int(48000 * seconds)
    pcm = (0.2 * np.sin(2 * np.pi * freq * np.arange(n) / 48000)).astype(np.float32)
    out = fr.add(enc.push(pcm, t0))
    out += fr.add(enc.flush())
    return out + fr.flush()


def video_fragments(channel_id: str, seconds: float = 2.0, fps: float = 2.0, t0: float | None = None,
                    size=(320, 240), start_seq: int = 0):
    from vdbnb.media.encode import VideoEncoder
    from vdbnb.media.fragmenter import Fragmenter
    t0 = t0 or time.time()
    w, h = size
    enc = VideoEncoder(w, h, fps=fps)
    fr = Fragmenter(channel_id, "video", "h264", {**enc.codec_info}, start_seq=start_seq)
    out = []
    for i in range(int(seconds * fps)):
        img = np.zeros((h, w, 4), np.uint8)
        img[:, : (i * 37) % w] = 255
        out += fr.add(enc.encode(img, t0 + i / fps))
    out += fr.add(enc.flush())
    return out + fr.flush()


def pcm_fragments(channel_id: str, pcm48: np.ndarray, t0: float, start_seq: int = 0, max_s: float = 0.5):
    """Real Opus fragments of the given 48 kHz PCM, stamped as if captured from ``t0``."""
    from vdbnb.media.encode import AudioEncoder
    from vdbnb.media.fragmenter import Fragmenter
    enc = AudioEncoder()
    fr = Fragmenter(channel_id, "audio", "opus", enc.codec_info, start_seq=start_seq, max_s=max_s)
    out = []
    step = 4800  # feed 0.1 s at a time, as a capture callback does
    for i in range(0, len(pcm48), step):
        out += fr.add(enc.push(pcm48[i:i + step], t0 + i / 48000))
    out += fr.add(enc.flush())
    return out + fr.flush()


def text_image(lines: list[str], size=(1280, 720), dark: bool = False, font_size: int = 28, spacing: float = 1.8,
               font: str = "DejaVuSans.ttf") -> np.ndarray:
    """An RGB screen-like image with the given lines of text (DejaVu Sans; ``spacing``: line pitch / font size,
    a terminal's is ~1.15; ``font="DejaVuSansMono.ttf"`` for a terminal's)."""
    from PIL import Image, ImageDraw, ImageFont
    bg, fg = ((30, 30, 30), (235, 235, 235)) if dark else ((250, 250, 250), (20, 20, 20))
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    face = ImageFont.truetype(f"/usr/share/fonts/truetype/dejavu/{font}", font_size)
    for i, line in enumerate(lines):
        d.text((60, 60 + i * int(font_size * spacing)), line, fill=fg, font=face)
    return np.asarray(img)


def screen_fragments(channel_id: str, frames: list[tuple[np.ndarray, dict]], t0: float, fps: float = 2.0,
                     start_seq: int = 0, gop_s: float = 60.0):
    """Real H.264 fragments of RGB frames (each held for 1/fps s); ``meta`` (window title…) per frame; a
    keyframe every ``gop_s`` (the recorder's default: fragments after the first continue its GOP)."""
    from vdbnb.media.encode import VideoEncoder
    from vdbnb.media.fragmenter import Fragmenter
    h, w = frames[0][0].shape[:2]
    enc = VideoEncoder(w, h, fps=fps, gop_s=gop_s)
    fr = Fragmenter(channel_id, "video", "h264", enc.codec_info, start_seq=start_seq)
    out = []
    for i, (rgb, meta) in enumerate(frames):
        bgra = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
        out += fr.add(enc.encode(np.ascontiguousarray(bgra), t0 + i / fps), meta=meta)
    out += fr.add(enc.flush())
    return out + fr.flush()


def long_session(root, hours: float, t0: float = 1_800_000_000.0, audio=("mic", "system_audio")) -> dict:
    """A long recorded session as stored fragment files, made fast: a few seconds of real Opus (a tone) and one
    real 60 s H.264 GOP (640x360, 1 fps, fragments of 2 s continuing it) encoded once, their packets repeated
    and re-stamped for ``hours``. Returns {"video": dir, "audio": [dirs]} in the layout the server stores."""
    from pathlib import Path

    from vdbnb.media.encode import AudioEncoder, Packet, VideoEncoder
    from vdbnb.media.fragmenter import Fragmenter

    root = Path(root)
    dur = hours * 3600
    enc = AudioEncoder()
    pk = enc.push((0.2 * np.sin(2 * np.pi * 440 * np.arange(48000 * 6) / 48000)).astype(np.float32), 0.0)
    out = {"audio": []}
    for ch in audio:
        d = root / ch
        d.mkdir(parents=True, exist_ok=True)
        fr = Fragmenter(ch, "audio", "opus", enc.codec_info, max_s=0.5)
        step = enc.frame_ms / 1000
        for i in range(int(dur / step)):
            for f in fr.add([Packet(pk[i % len(pk)].data, t0 + i * step, step, True)]):
                (d / f"{f.seq:08d}.frag").write_bytes(f.pack())
        for f in fr.flush():
            (d / f"{f.seq:08d}.frag").write_bytes(f.pack())
        out["audio"].append(d)
    venc = VideoEncoder(640, 360, fps=1.0)
    vp = []
    for i in range(60):
        img = np.zeros((360, 640, 4), np.uint8)
        img[:, : 10 * (i + 1), :3] = 255
        vp += venc.encode(img, float(i))
    vp += venc.flush()
    d = out["video"] = root / "video"
    d.mkdir(parents=True, exist_ok=True)
    fr = Fragmenter("display:1", "video", "h264", venc.codec_info)
    for i in range(int(dur)):
        p = vp[i % 60]
        for f in fr.add([Packet(p.data, t0 + i, 1.0, p.key)]):
            (d / f"{f.seq:08d}.frag").write_bytes(f.pack())
    for f in fr.flush():
        (d / f"{f.seq:08d}.frag").write_bytes(f.pack())
    return out


def vpx_fragments(channel_id: str, frames: list[tuple[np.ndarray, dict]], t0: float, codec: str = "vp9",
                  fps: float = 2.0, gop_s: float = 2.0, start_seq: int = 0):
    """Real VP8/VP9 fragments (libvpx) of RGB frames, cut as the browser recorder cuts them: a keyframe at
    least every ``gop_s`` seconds, one GOP per fragment, packets with pts/dur/size/key."""
    import fractions

    import av

    from vdbnb.media.encode import Packet
    from vdbnb.media.fragmenter import Fragmenter
    h, w = frames[0][0].shape[:2]
    ctx = av.CodecContext.create({"vp8": "libvpx", "vp9": "libvpx-vp9"}[codec], "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 1000)
    ctx.bit_rate = 1_000_000
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"}
    ctx.open()
    fr = Fragmenter(channel_id, "video", codec, {"width": w, "height": h, "fps": fps}, start_seq=start_seq)
    out, last_key = [], None

    def wrap(pkts):
        return [Packet(bytes(p), t0 + p.pts / 1000.0, 1.0 / fps, bool(p.is_keyframe)) for p in pkts]
    for i, (rgb, meta) in enumerate(frames):
        pts = t0 + i / fps
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        f.pts = int(round(i * 1000 / fps))
        if last_key is None or pts - last_key + 1.0 / fps > gop_s + 1e-6:
            f.pict_type = av.video.frame.PictureType.I
            last_key = pts
        out += fr.add(wrap(ctx.encode(f)), meta=meta)
    out += fr.add(wrap(ctx.encode(None)))
    return out + fr.flush()
