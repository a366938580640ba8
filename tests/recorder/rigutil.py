"""Helpers for recorder tests (imported as `rigutil`): backend calls with the API key, fragments on the server's disk, rig drivers."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def backend_session(server) -> tuple[str, str]:
    """Create a capture session and a client token as a backend would (API key)."""
    h = server.headers()
    r = httpx.post(server.url + "/collection/default/capture/session", json={"end_user_id": "test-user"},
                   headers=h, timeout=10)
    r.raise_for_status()
    d = r.json()["data"]
    sid = d.get("id") or d["session_id"]
    t = httpx.post(server.url + "/capture/session/token", json={}, headers=h, timeout=10)
    t.raise_for_status()
    return sid, t.json()["data"]["token"]


def frag_header(path: Path) -> dict:
    b = Path(path).read_bytes()
    (n,) = struct.unpack(">I", b[:4])
    return json.loads(b[4:4 + n])


def server_fragments(data_dir: Path, sid: str) -> dict[str, list[Path]]:
    """channel_id -> fragment files stored by the server (media/<sid>/<rtstream_id>/<seq>.frag), by seq."""
    out: dict[str, list[Path]] = {}
    base = Path(data_dir) / "media" / sid
    if not base.exists():
        return out
    for d in base.iterdir():
        files = sorted(d.glob("*.frag"))
        if files:
            out[frag_header(files[0])["channel_id"]] = files
    return out


def seqs(files: list[Path]) -> list[int]:
    return sorted(frag_header(f)["seq"] for f in files)


def tts(path: Path, text: str, voice: str = "en", speed: int = 160) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True)
    return path


def play(wav: Path, device: str) -> subprocess.Popen:
    return subprocess.Popen(["paplay", f"--device={device}", str(wav)])


class Xterm:
    def __init__(self, title: str, bg: str = "red", geometry: str = "80x20+100+100", text: str = ""):
        self.title = title
        cmd = ["xterm", "-T", title, "-bg", bg, "-fg", "white", "-geometry", geometry, "-e",
               f"bash -c 'echo {text}; sleep 600'"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        self.wid = None
        t = time.time()
        while time.time() - t < 10:
            r = subprocess.run(["xdotool", "search", "--name", f"^{title}$"], capture_output=True, text=True)
            if r.stdout.strip():
                self.wid = r.stdout.split()[0]
                break
            time.sleep(0.1)
        assert self.wid, f"xterm {title} did not appear"

    def move(self, x: int, y: int):
        subprocess.run(["xdotool", "windowmove", self.wid, str(x), str(y)], check=True)

    def activate(self):
        subprocess.run(["xdotool", "windowactivate", "--sync", self.wid], capture_output=True)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ToneStream:
    """A low-latency output stream into a sink (sounddevice via the ALSA pulse plugin, PULSE_SINK=device)
    playing silence; ``beep()`` plays a tone from the next callback and records when it was emitted.

    (A pacat fed through a pipe is not usable for timing: the pipe holds a constant backlog of up to
    ~340 ms, measured.)"""

    def __init__(self, device: str, rate: int = 48000):

        import sounddevice as sd

        self.rate = rate
        old = os.environ.get("PULSE_SINK")
        os.environ["PULSE_SINK"] = device
        self._pending: np.ndarray | None = None
        self._lock = threading.Lock()
        self.beep_times: list[float] = []

        def cb(out, frames, t, status):  # noqa: ARG001
            out[:] = 0
            with self._lock:
                if self._pending is not None:
                    n = min(frames, len(self._pending))
                    out[:n, 0] = self._pending[:n]
                    if len(self.beep_times) < self._nbeeps:
                        self.beep_times.append(time.time() + self.stream.latency)
                    self._pending = self._pending[n:] if n < len(self._pending) else None
                    if self._pending is None:
                        pass

        self._nbeeps = 0
        self.stream = sd.OutputStream(device="pulse", samplerate=rate, channels=1, dtype="float32",
                                      blocksize=240, latency="low", callback=cb)
        self.stream.start()
        if old is None:
            os.environ.pop("PULSE_SINK", None)
        else:
            os.environ["PULSE_SINK"] = old

    def beep(self, dur: float = 0.3, freq: float = 1000.0, amp: float = 0.5):
        t = np.arange(int(self.rate * dur)) / self.rate
        with self._lock:
            self._nbeeps += 1
            self._pending = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    def close(self):
        self.stream.stop()
        self.stream.close()


def envelope(x: np.ndarray, rate: int, win_s: float = 0.02) -> np.ndarray:
    n = int(rate * win_s)
    m = len(x) // n
    if m == 0:
        return np.zeros(0)
    return np.sqrt((x[:m * n].reshape(m, n).astype(np.float64) ** 2).mean(axis=1))


def xcorr_max(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Max normalized cross-correlation of two envelopes (b slid along a); returns (value, lag in windows)."""
    a = (a - a.mean()) / (a.std() + 1e-9)
    b = (b - b.mean()) / (b.std() + 1e-9)
    if len(a) < len(b):
        a = np.pad(a, (0, len(b) - len(a)))
    c = np.correlate(a, b, mode="valid")
    i = int(np.argmax(c))
    return float(np.corrcoef(a[i:i + len(b)], b)[0, 1]), i


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        if w.getnchannels() > 1:
            x = x.reshape(-1, w.getnchannels()).mean(axis=1)
    return x, rate


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    n = int(len(x) * dst / src)
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


