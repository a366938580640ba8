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
import pytest


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
    """A pacat stream held open into a sink, writing silence; ``beep()`` writes a tone now (low latency)."""

    def __init__(self, device: str, rate: int = 48000):
        self.rate = rate
        self.p = subprocess.Popen(["pacat", f"--device={device}", "--format=float32le", f"--rate={rate}",
                                   "--channels=1", "--latency-msec=15", "--playback"], stdin=subprocess.PIPE)
        self._q: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.beep_times: list[float] = []
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        blk = self.rate // 100
        t0 = time.time()
        n = 0
        while not self._stop.is_set():
            with self._lock:
                chunk = self._q.pop(0) if self._q else None
            if chunk is None:
                chunk = np.zeros(blk, np.float32)
            else:
                self.beep_times.append(time.time())
            try:
                self.p.stdin.write(chunk.tobytes())
                self.p.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            n += len(chunk)
            delay = t0 + n / self.rate - time.time() - 0.02  # keep ~20 ms queued
            if delay > 0:
                time.sleep(delay)

    def beep(self, dur: float = 0.3, freq: float = 1000.0, amp: float = 0.5):
        t = np.arange(int(self.rate * dur)) / self.rate
        with self._lock:
            self._q.append((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32))

    def close(self):
        self._stop.set()
        self._t.join(2)
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.p.terminate()


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
    c = np.correlate(a, b, mode="valid") / len(b)
    i = int(np.argmax(c))
    return float(c[i]), i


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


