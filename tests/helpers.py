"""Test helpers: a real webhook receiver on 127.0.0.1, real encoded fragments, the server's secrets."""
from __future__ import annotations

import functools
import sqlite3
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class WebhookReceiver:
    """A real HTTP server that records every POST (headers + body). ``fail_every`` answers 500 to some."""

    def __init__(self, port: int = 0, fail_pattern=None):
        self.received: list[dict] = []
        self.lock = threading.Lock()
        self.fail_pattern = fail_pattern  # callable(n) -> bool: True = answer 500
        self.count = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.count += 1
                    fail = outer.fail_pattern(outer.count) if outer.fail_pattern else False
                    if not fail:
                        outer.received.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                               "body": body.decode(), "json": json.loads(body)})
                self.send_response(500 if fail else 200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"received": true}')

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self) -> list[dict]:
        with self.lock:
            return [r["json"] for r in self.received]

    def wait_for(self, pred, timeout: float = 20.0) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            time.sleep(0.05)
        raise AssertionError(f"webhooks not received in {timeout}s; got {[e.get('event') for e in self.events()]}")


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


def speak_16k(text: str, speed: int = 160, voice: str | None = None) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono float32, resampled the way the server resamples captured audio (PyAV's
    libswresample, band-limited). Plain linear interpolation would alias the 8-11 kHz content into the band
    Whisper hears, which no capture path does."""
    return speak(text, speed=speed, voice=voice, rate=16000)


def speak(text: str, speed: int = 160, voice: str | None = None, rate: int = 16000) -> np.ndarray:
    """espeak-ng speech as mono float32 at ``rate`` (48000: what a sound server plays and the recorder
    captures), resampled with PyAV's libswresample."""
    import subprocess
    import tempfile
    import wave

    import av

    with tempfile.TemporaryDirectory() as d:
        f = f"{d}/s.wav"
        subprocess.run(["espeak-ng", "-s", str(speed), *(["-v", voice] if voice else []), "-w", f, text],
                       check=True, capture_output=True)
        with wave.open(f) as w:
            src = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    rs = av.AudioResampler(format="flt", layout="mono", rate=rate)
    fr = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
    fr.sample_rate = src
    out = [r.to_ndarray().reshape(-1) for r in [*rs.resample(fr), *rs.resample(None)]]
    return np.concatenate(out).astype(np.float32)


def espeak_wav(text: str, path, rate: int | None = None, speed: int = 160) -> str:
    """Speak ``text`` into a wav file with espeak-ng (optionally resampled with sox)."""
    import subprocess
    path = str(path)
    raw = path + ".raw.wav"
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", raw, text], check=True)
    if rate:
        subprocess.run(["sox", raw, "-r", str(rate), "-c", "1", path], check=True)
    else:
        import os
        os.replace(raw, path)
    return path


def read_wav(path) -> tuple[np.ndarray, int]:
    import wave
    with wave.open(str(path)) as w:
        n, sr, ch = w.getnframes(), w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(n), np.int16).astype(np.float32) / 32768.0
    if ch > 1:
        data = data.reshape(-1, ch).mean(axis=1)
    return data, sr


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


@functools.lru_cache(maxsize=1)
def _normaliser():
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as e:  # a test dependency (pyproject: test extra)
        raise RuntimeError("WER needs whisper-normalizer: pip install 'vdbnb[test]'") from e
    return EnglishTextNormalizer()


def words(text: str) -> list[str]:
    """Words for WER, normalised the standard way: OpenAI Whisper's English text normaliser (case,
    punctuation, hyphens, contractions, spelled-out numbers to digits, British to American spelling, fillers
    such as "um" removed), as used to score Whisper and in the open ASR leaderboards."""
    return _normaliser()(text).split()


def edit_distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def wer(ref: str, hyp: str) -> float:
    r = words(ref)
    return edit_distance(r, words(hyp)) / max(1, len(r))


def text_image(lines: list[str], size=(1280, 720), dark: bool = False, font_size: int = 28) -> np.ndarray:
    """An RGB screen-like image with the given lines of text (DejaVu Sans)."""
    from PIL import Image, ImageDraw, ImageFont
    bg, fg = ((30, 30, 30), (235, 235, 235)) if dark else ((250, 250, 250), (20, 20, 20))
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", font_size)
    for i, line in enumerate(lines):
        d.text((60, 60 + i * int(font_size * 1.8)), line, fill=fg, font=font)
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


def processes_with_env(name: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose environment holds ``name=value``: everything a test
    started (children and grandchildren inherit a marker variable), wherever it was reparented to."""
    import os
    from pathlib import Path
    want = f"{name}={value}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if want not in (d / "environ").read_bytes().split(b"\0"):
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]))
        except OSError:
            continue
    return out


def wait_no_processes_with_env(name: str, value: str, timeout: float = 30.0) -> list[tuple[int, str]]:
    """Wait until no process carries ``name=value``; return those still alive at the deadline."""
    deadline = time.time() + timeout
    left = processes_with_env(name, value)
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = processes_with_env(name, value)
    return left


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


def wait_for_value(fn, what: str, timeout: float, step: float = 0.25):
    """``fn()``'s first truthy value, polled until ``timeout``; else AssertionError naming ``what`` and the
    last value seen (tests wait for conditions, never for fixed times)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not after {timeout:.0f} s (last: {last!r})")
class RecordingLLM:
    """A local OpenAI-compatible endpoint (POST /v1/chat/completions) that records every request (its raw
    body, parsed JSON and arrival time) and answers with a short fixed summary. Outside this machine such an
    endpoint is a remote model: this is what would leave."""

    def __init__(self, reply: str = "the user is working in a terminal"):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    outer.requests.append({"t": time.time(), "path": self.path, "raw": raw.decode(),
                                           "json": json.loads(raw)})
                body = json.dumps({"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                                   "model": "test", "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                       "role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def env(self) -> dict:
        return {"VDBNB_LLM_URL": self.url, "VDBNB_LLM_MODEL": "test-vlm"}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def texts(self) -> list[tuple[float, str]]:
        """(arrival time, every text part of the request's messages joined)."""
        out = []
        with self.lock:
            reqs = list(self.requests)
        for r in reqs:
            parts = []
            for m in r["json"].get("messages", []):
                c = m.get("content")
                parts += [c] if isinstance(c, str) else [p.get("text", "") for p in c if p.get("type") == "text"]
            out.append((r["t"], "\n".join(parts)))
        return out

    def images(self) -> list[np.ndarray]:
        """Every image sent (data: URLs decoded to RGB arrays)."""
        import base64
        import io

        from PIL import Image
        out = []
        with self.lock:
            reqs = list(self.requests)
        for r in reqs:
            for m in r["json"].get("messages", []):
                c = m.get("content")
                for p in c if isinstance(c, list) else []:
                    if p.get("type") == "image_url":
                        b64 = p["image_url"]["url"].split(",", 1)[1]
                        out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")))
        return out


def runs(secret: str, n: int = 4) -> set[str]:
    """Every n-character run of ``secret`` (what must not appear anywhere once it is redacted)."""
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def leaked(secret: str, text: str, n: int = 4, ignore_case: bool = False) -> list[str]:
    """The n-character runs of ``secret`` found in ``text`` (empty: nothing of it is there), each with the
    text around its first occurrence."""
    low = text.lower() if ignore_case else text
    out = []
    for r in sorted(runs(secret.lower() if ignore_case else secret, n)):
        i = low.find(r)
        if i >= 0:
            out.append(f"{r!r} in ...{text[max(0, i - 60):i + 60]!r}...")
    return out


# Secrets made per run (outside checks use others). Every 4-character run of a generated key or password holds
# an upper-case letter, a digit and a letter past 'f': no such run can occur by chance in a hex id, a number,
# a JSON field name or English prose, so finding one anywhere means the secret leaked.
_CLASSES = ("GHJKLMNPQRSTUVWXYZ", "23456789", "ghjkmnpqrstuvwxyz")


def random_secret(n: int, rng=None) -> str:
    import random
    rng = rng or random.SystemRandom()
    return "".join(rng.choice(_CLASSES[i % 3]) for i in range(n))


def random_api_key(rng=None) -> str:
    return "sk-live-" + random_secret(32, rng)


# Words the live speech-to-text (tiny.en) hears reliably after "My password is" / "My API key is" when
# espeak-ng speaks them at 140 words a minute (checked on the dev set; a spoken passphrase is words).
# (Words that share a 4-run with the server's own vocabulary are left out: pelican/pipeline, rocket/websocket,
# cobalt/global, pepper/wrapper.)
SPOKEN_WORDS = ("tiger", "dragon", "cactus", "lemon", "falcon", "meadow", "saddle", "bamboo", "mango", "castle",
                "wizard")


def spoken_passphrase(k: int = 3, avoid: str = "", rng=None) -> list[str]:
    """``k`` distinct words of SPOKEN_WORDS, none sharing a 4-character run with ``avoid`` (the run's other
    text), so that a run of the passphrase found anywhere can only come from the passphrase."""
    import random
    rng = rng or random.SystemRandom()
    pool = [w for w in SPOKEN_WORDS if not leaked(w, avoid, ignore_case=True)]
    return rng.sample(pool, k)


def strings(v) -> list[str]:
    """Every string value inside a JSON-like value (not the keys: those are the code's)."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in strings(x)]
    if isinstance(v, (list, tuple)):
        return [s for x in v for s in strings(x)]
    return []


def db_texts(path) -> list[str]:
    """Every text value in every table of an SQLite file."""
    out = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            try:
                rows = db.execute(f'SELECT * FROM "{t}"').fetchall()
            except sqlite3.DatabaseError:
                continue
            out += [v for r in rows for v in r if isinstance(v, str)]
    finally:
        db.close()
    return out


class WsRecorder:
    """Every message of the collection's event websocket (all channels), on a thread."""

    def __init__(self, server):
        import httpx
        import websockets.sync.client as wsc
        url = httpx.get(f"{server.url}/collection/default/websocket", headers=server.headers()).json()["data"][
            "websocket_url"]
        self._cm = wsc.connect(url + "&all=1")
        self.conn = self._cm.__enter__()
        self.msgs: list[dict] = []
        self.connection_id = json.loads(self.conn.recv(10))["connection_id"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for m in self.conn:
                self.msgs.append({"t": time.time(), **json.loads(m)})
        except Exception:
            pass

    def close(self):
        self._cm.__exit__(None, None, None)
