"""An audio channel as a capture source: a capture subprocess (parec, or the sounddevice worker with
PULSE_SOURCE) writing float32 PCM; a reader thread stamps blocks on the one clock, emits levels and feeds
the encoder; a capture process that stops is restarted while the sound server still has the source."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from typing import Callable

import numpy as np

from vdbnb.config import child_env
from vdbnb.recorder.sources import _Source

AUDIO_RATE = 48000
BLOCK = 2880  # 60 ms per read = one Opus frame; one level event per block (16.7 Hz)


def _audio_backend(b: str) -> str:
    """``auto``: ``parec`` when installed (it ships with pactl, which channel listing needs anyway), else the
    sounddevice worker. Measured on the rig, per audio channel: parec 0.25–0.35 % of a core, the sounddevice
    worker (a Python process per channel) 1.3–1.5 % and ~60 MB RSS. Override with VDBNB_AUDIO_BACKEND
    (``Settings.audio_backend``)."""
    if b == "auto":
        return "parec" if shutil.which("parec") else "sounddevice"
    return b


class AudioSource(_Source):
    """One audio channel: a capture subprocess (sounddevice worker with PULSE_SOURCE, or parec) writing
    float32 PCM; a reader thread timestamps blocks on the shared clock, emits levels, feeds the encoder."""

    def __init__(self, channel_id: str, source: str, emit: Callable[[str, dict], None],
                 on_lost: Callable[[str, str], None], level_hz: float = 16.0, channels: int = 1,
                 backend: str = "auto"):
        self.channel_id = channel_id
        self.source = source
        self.emit = emit
        self.on_lost = on_lost
        self.level_hz = level_hz
        self.channels = channels
        self.preview = False
        self.encoder_cb: Callable[[np.ndarray, float], None] | None = None
        self.paused = False
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = {"levels": 0, "samples": 0, "reanchors": 0}
        self.backend = _audio_backend(backend)

    def record(self, feed: Callable[[np.ndarray, float], None]) -> None:
        """Encode this channel: ``feed(pcm, t_first_sample)`` for every block (silence while paused)."""
        self.paused = False
        self.encoder_cb = feed
        self.update()

    def unrecord(self) -> None:
        self.encoder_cb = None
        self.paused = False
        self.update()

    def _cmd(self) -> tuple[list[str], dict]:
        if self.backend == "parec" and shutil.which("parec"):
            return ([shutil.which("parec"), f"--device={self.source}", "--format=float32le",
                     f"--rate={AUDIO_RATE}", f"--channels={self.channels}", "--latency-msec=30", "--process-time-msec=30",
                     "--raw"], child_env())
        env = child_env({"PULSE_SOURCE": self.source})  # the worker's PortAudio opens this source
        return ([sys.executable, "-m", "vdbnb.recorder.audio_worker", "--rate", str(AUDIO_RATE),
                 "--channels", str(self.channels), "--block", str(BLOCK)], env)

    def _start(self):
        self._stopping = False
        cmd, env = self._cmd()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, bufsize=0)
        self._thread = threading.Thread(target=self._run, name=f"audio-{self.channel_id}", daemon=True)
        self._thread.start()

    def _stop(self):
        self._stopping = True
        p = self.proc
        if p and p.poll() is None:
            try:
                p.stdin.close()
            except OSError:
                pass
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
        if self._thread:
            self._thread.join(5)
        self._thread = None
        self.proc = None

    def _run(self):
        restarts = 0
        while True:
            got, reason = self._run_once()
            if self._stopping or reason is None:
                return
            # the capture process stopped: if the sound server still has the source it was a hiccup (a null
            # sink's monitor can stay silent for ~2 s at start-up, measured) → restart (after 2 failures with
            # parec if installed); if the source is gone → channel lost
            if self._source_exists() and restarts < 5:
                restarts += 1
                self.stats["restarts"] = restarts
                if restarts == 2 and shutil.which("parec"):
                    self.backend = "parec"
                print(f"[audio {self.channel_id}] capture process failed early ({reason}); restarting with "
                      f"{self.backend}", file=sys.stderr, flush=True)
                cmd, env = self._cmd()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, env=env, bufsize=0)
                continue
            self.on_lost(self.channel_id, reason)
            return

    def _source_exists(self) -> bool:
        from vdbnb.recorder.pulse import has_source

        return has_source(self.source)

    def _run_once(self) -> tuple[int, str | None]:
        p = self.proc
        nbytes = BLOCK * 4 * self.channels
        win = min(int(AUDIO_RATE / self.level_hz), BLOCK)
        lvl_buf: list[np.ndarray] = []
        lvl_n = 0
        anchor: float | None = None
        count = 0
        fd = p.stdout
        pending = b""
        while True:
            try:
                chunk = fd.read(nbytes)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                break
            ta = time.time()
            pending += chunk
            usable = len(pending) - len(pending) % (4 * self.channels)
            if usable == 0:
                continue
            data, pending = pending[:usable], pending[usable:]
            pcm = np.frombuffer(data, np.float32).reshape(-1, self.channels)
            n = len(pcm)
            # one clock: the sample counter anchored at the earliest plausible capture time, re-anchored on
            # a dropout or a drift larger than 200 ms
            est = ta - (count + n) / AUDIO_RATE
            if anchor is None or est < anchor:
                anchor = est
            elif est - anchor > 0.2:
                anchor = est
                self.stats["reanchors"] += 1
            t_first = anchor + count / AUDIO_RATE
            count += n
            self.stats["samples"] += n
            mono = pcm[:, 0] if self.channels == 1 else pcm.mean(axis=1)
            lvl_buf.append(mono)
            lvl_n += n
            if lvl_n >= win:
                a = np.concatenate(lvl_buf) if len(lvl_buf) > 1 else lvl_buf[0]
                lvl_buf, lvl_n = [], lvl_n - win  # carry the remainder: the rate averages level_hz
                rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
                peak = float(np.max(np.abs(a))) if len(a) else 0.0
                self.stats["levels"] += 1
                self.emit("audio-level", {"channel_id": self.channel_id, "ts": t_first + n / AUDIO_RATE,
                                          "rms": round(rms, 5), "peak": round(peak, 5),
                                          "paused": self.paused})
            cb = self.encoder_cb
            if cb is not None:
                cb(np.zeros_like(pcm) if self.paused else pcm, t_first)
            self.stats["cpu_s"] = round(time.thread_time(), 3)   # this thread's CPU (bench_recorder)
        if not self._stopping:
            err = b""
            try:
                err = p.stderr.read() or b""
            except (OSError, ValueError):
                pass
            rc = p.wait()
            text = err.decode(errors="replace").strip()
            if text:
                print(f"[audio {self.channel_id}] exited {rc}:\n{text[-4000:]}", file=sys.stderr, flush=True)
            msg = [m for m in text.splitlines() if m.strip() and not m.startswith(("ALSA lib", "Expression"))]
            why = msg[-1].strip() if msg else f"capture process exited with code {rc}"
            return count, f"audio source {self.source!r} stopped: {why}"
        return count, None
