"""Audio channels as capture sources: a capture subprocess per channel (parec, or the sounddevice worker with
PULSE_SOURCE) writing 16-bit PCM in chunks of ``READ_FRAMES`` Opus frames; ONE reader thread for every
channel (:class:`AudioHub`) stamps the chunks on the one clock, computes the levels of the whole chunk at
once and feeds the encoder several frames per wake-up; a capture process that stops is restarted while the
sound server still has the source.

Why so: the recorder's CPU budget is 5 % of one core for a 1080p screen and two audio channels. Reading 60 ms
blocks on a thread per channel (float32 from parec's 30 ms writes) cost ~2.3 % of a core per channel, mostly
Python work per wake-up; 120 ms chunks of s16 read by one thread cost a fraction of that
(bench/bench_recorder.py --compare). A chunk is the fragment's half (0.25 s fragments of 60 ms frames hold
four), so a fragment waits at most one chunk for its last frame."""
from __future__ import annotations

import os
import selectors
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
FRAME = 2880        # 60 ms: one Opus frame and one level value (16.7 Hz)
READ_FRAMES = 2     # frames per chunk the capture process writes (120 ms): one wake-up of the reader each
SAMPLE_BYTES = 2    # s16le


class CaptureClock:
    """Capture times of PCM blocks on the one clock: the sample counter, anchored at the earliest plausible
    capture time of the first sample.

    ``est = arrival - samples so far / rate`` is an upper bound of the true anchor (a block cannot arrive
    before it was captured), so the anchor is the smallest ``est`` seen. A reader that falls behind (a busy
    box) reads a backlog late and then quickly: ``est`` rises for a moment and comes back, and no sample was
    lost, so the stamps keep following the sample count. Only a rise that lasts ``confirm_s`` (samples really
    lost: a device stall, an overrun) moves the anchor forward, to the smallest ``est`` seen since the rise
    began. (Re-anchoring on every late read put seconds of made-up silence into speech under load: a 0.6 s
    scheduling stall became 0.54 s of inserted silence, then 60 ms steps backwards while the backlog drained.)
    """

    def __init__(self, rate: int = 48000, tolerance_s: float = 0.2, confirm_s: float = 1.0):
        self.rate = rate
        self.tolerance_s = tolerance_s
        self.confirm_s = confirm_s
        self.anchor: float | None = None
        self.count = 0
        self.reanchors = 0
        self._drift_since: float | None = None
        self._drift_min = 0.0

    def stamp(self, n: int, arrival: float) -> float:
        """The capture time of the first of ``n`` samples that arrived (their last one) at ``arrival``."""
        est = arrival - (self.count + n) / self.rate
        if self.anchor is None or est <= self.anchor:
            self.anchor = est
            self._drift_since = None
        elif est - self.anchor > self.tolerance_s:
            if self._drift_since is None:
                self._drift_since, self._drift_min = arrival, est
            else:
                self._drift_min = min(self._drift_min, est)
            if arrival - self._drift_since >= self.confirm_s:  # it lasted: samples were lost
                self.anchor = self._drift_min
                self._drift_since = None
                self.reanchors += 1
        else:
            self._drift_since = None
        t_first = self.anchor + self.count / self.rate
        self.count += n
        return t_first


def _audio_backend(b: str) -> str:
    """``auto``: ``parec`` when installed (it ships with pactl, which channel listing needs anyway), else the
    sounddevice worker. Measured on the rig, per audio channel: parec 0.25–0.35 % of a core, the sounddevice
    worker (a Python process per channel) 1.3–1.5 % and ~60 MB RSS. Override with VDBNB_AUDIO_BACKEND
    (``Settings.audio_backend``)."""
    if b == "auto":
        return "parec" if shutil.which("parec") else "sounddevice"
    return b


def levels(mono: np.ndarray, frame: int = FRAME) -> tuple[np.ndarray, np.ndarray]:
    """RMS and peak (full scale 1.0) of each ``frame`` samples of 16-bit mono PCM whose length is a multiple
    of ``frame``: one pass of vector arithmetic for the whole chunk."""
    m = mono.reshape(-1, frame)
    f = m.astype(np.float32)
    rms = np.sqrt(np.einsum("ij,ij->i", f, f) / frame) / 32768.0
    peak = np.maximum(m.max(axis=1).astype(np.int32), -m.min(axis=1).astype(np.int32)) / 32768.0
    return rms, peak


class _Run:
    """One capture process of a channel and the reader's state for it (bytes not yet a whole frame, the
    clock anchor, the samples read)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = bytearray()
        self.clock = CaptureClock(AUDIO_RATE)


class AudioHub:
    """The one thread that reads every audio channel's capture pipe. It wakes when a pipe has data (parec
    writes a chunk every ``READ_FRAMES`` frames), hands whole frames to the channel and goes back to sleep;
    it runs while at least one channel is attached. Registration changes are made on the hub's thread (a
    wake-up pipe carries them), so a channel detached by :meth:`detach` gets no callback afterwards."""

    def __init__(self):
        self._lock = threading.Lock()
        self._todo: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake_w = -1

    def attach(self, src: "AudioSource", run: _Run) -> None:
        self._call(lambda: self._sel.register(run.fd, selectors.EVENT_READ, (src, run)), start=True)

    def detach(self, run: _Run) -> None:
        """Stop reading ``run``'s pipe; returns once the hub's thread took it out (or the hub is gone)."""
        done = threading.Event()

        def drop():
            try:
                self._sel.unregister(run.fd)
            except (KeyError, ValueError):
                pass
            done.set()

        th = self._call(drop, start=False)
        if th is not None and th is not threading.current_thread():
            while not done.wait(0.2) and th.is_alive():
                pass

    def _call(self, fn: Callable[[], None], start: bool) -> threading.Thread | None:
        """Run ``fn`` on the hub's thread (started if ``start`` and not running); returns that thread."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if not start:
                    return None
                self._sel = selectors.DefaultSelector()
                wake_r, self._wake_w = os.pipe()
                self._sel.register(wake_r, selectors.EVENT_READ, None)
                self._todo = []
                self._thread = threading.Thread(target=self._loop, args=(self._sel, wake_r, self._wake_w),
                                                name="audio", daemon=True)
                self._thread.start()
            self._todo.append(fn)
            th = self._thread
            os.write(self._wake_w, b"x")
            return th

    def _loop(self, sel: selectors.BaseSelector, wake_r: int, wake_w: int) -> None:
        try:
            while True:
                for key, _ in sel.select():
                    if key.data is None:
                        os.read(wake_r, 4096)
                        with self._lock:
                            todo, self._todo = self._todo, []
                        for fn in todo:
                            fn()
                        continue
                    if sel.get_map().get(key.fd) is not key:
                        continue   # detached by a change made in this same round
                    src, run = key.data
                    try:
                        chunk = os.read(run.fd, 1 << 16)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        sel.unregister(run.fd)
                        src._ended(run)
                        continue
                    src._chunk(run, chunk, time.time())
                with self._lock:
                    if len(sel.get_map()) <= 1 and not self._todo:   # only the wake-up pipe is left
                        self._thread = None   # the next attach starts a new hub thread
                        return
        finally:
            sel.close()
            os.close(wake_r)
            os.close(wake_w)


_HUB = AudioHub()


class AudioSource(_Source):
    """One audio channel: its capture subprocess (parec, or the sounddevice worker with PULSE_SOURCE) writing
    16-bit PCM; the :class:`AudioHub` thread stamps chunks on the shared clock, emits levels (one per 60 ms
    frame, written together per chunk) and feeds the encoder."""

    def __init__(self, channel_id: str, source: str, emit: Callable[[str, dict], None],
                 on_lost: Callable[[str, str], None], channels: int = 1, backend: str = "auto",
                 emit_many: Callable[[str, list[dict]], None] | None = None, hub: AudioHub | None = None):
        self.channel_id = channel_id
        self.source = source
        self.emit = emit
        self.emit_many = emit_many or (lambda ev, payloads: [emit(ev, p) for p in payloads])
        self.on_lost = on_lost
        self.channels = channels
        self.preview = False
        self.encoder_cb: Callable[[np.ndarray, float], None] | None = None
        self.paused = False
        self.proc: subprocess.Popen | None = None
        self._run: _Run | None = None
        self._thread = None       # _Source's worker: this channel reads on the hub's thread
        self._stopping = False
        self._restarts = 0
        self._life = threading.Lock()   # a restart after a crash and a stop do not interleave
        self.hub = hub or _HUB
        self.stats = {"levels": 0, "samples": 0, "reanchors": 0, "chunks": 0}
        self.backend = _audio_backend(backend)

    @property
    def running(self) -> bool:
        return self._run is not None

    def record(self, feed: Callable[[np.ndarray, float], None]) -> None:
        """Encode this channel: ``feed(pcm_s16, t_first_sample)`` for every chunk (silence while paused)."""
        self.paused = False
        self.encoder_cb = feed
        self.update()

    def unrecord(self) -> None:
        self.encoder_cb = None
        self.paused = False
        self.update()

    def _cmd(self) -> tuple[list[str], dict]:
        chunk_ms = READ_FRAMES * FRAME * 1000 // AUDIO_RATE
        if self.backend == "parec" and shutil.which("parec"):
            # --latency-msec sets the record stream's fragment size: the sound server hands parec (and parec
            # the pipe) one chunk of that length at a time
            return ([shutil.which("parec"), f"--device={self.source}", "--format=s16le",
                     f"--rate={AUDIO_RATE}", f"--channels={self.channels}", f"--latency-msec={chunk_ms}",
                     f"--process-time-msec={chunk_ms}", "--raw"], child_env())
        env = child_env({"PULSE_SOURCE": self.source})  # the worker's PortAudio opens this source
        return ([sys.executable, "-m", "vdbnb.recorder.audio_worker", "--rate", str(AUDIO_RATE),
                 "--channels", str(self.channels), "--block", str(FRAME * READ_FRAMES)], env)

    def _spawn(self) -> None:
        cmd, env = self._cmd()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, bufsize=0)
        self._run = _Run(self.proc)
        self.hub.attach(self, self._run)

    def _start(self):
        with self._life:
            self._stopping = False
            self._restarts = 0
            self._spawn()

    def _stop(self):
        with self._life:
            self._stopping = True
            run, self._run = self._run, None
        if run is not None:
            self.hub.detach(run)
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
        self.proc = None

    # ---------------------------------------------------------------- on the hub's thread
    def _chunk(self, run: _Run, data: bytes, ta: float) -> None:
        """Bytes from the capture pipe, read at ``ta``: every whole frame goes to the levels and the encoder."""
        fbytes = FRAME * SAMPLE_BYTES * self.channels
        if not run.buf and len(data) % fbytes == 0:
            raw = data                 # the usual case: the capture process writes whole chunks
        else:
            run.buf += data
            usable = len(run.buf) - len(run.buf) % fbytes
            if usable == 0:
                return
            raw = bytes(run.buf[:usable])
            del run.buf[:usable]
        pcm = np.frombuffer(raw, np.int16).reshape(-1, self.channels)
        n = len(pcm)
        # one clock (CaptureClock): the sample counter anchored at the earliest plausible capture time; what
        # arrived at ta ended at ta, less the bytes still waiting to be a whole frame
        pending = len(run.buf) // (SAMPLE_BYTES * self.channels)
        reanchors = run.clock.reanchors
        t_first = run.clock.stamp(n, ta - pending / AUDIO_RATE)
        self.stats["reanchors"] += run.clock.reanchors - reanchors
        self.stats["samples"] += n
        self.stats["chunks"] += 1
        mono = pcm[:, 0] if self.channels == 1 else pcm.mean(axis=1).astype(np.int16)
        rms, peak = levels(mono)
        paused = self.paused
        self.stats["levels"] += len(rms)
        self.emit_many("audio-level", [{"channel_id": self.channel_id, "ts": round(t_first + (i + 1) * FRAME / AUDIO_RATE, 4),
                                        "rms": round(float(r), 5), "peak": round(float(p), 5), "paused": paused}
                                       for i, (r, p) in enumerate(zip(rms.tolist(), peak.tolist()))])
        cb = self.encoder_cb
        if cb is not None:
            cb(np.zeros_like(pcm) if paused else pcm, t_first)

    def _ended(self, run: _Run) -> None:
        """The capture pipe closed: unless stopping, find out why on a thread of its own (waiting for the
        process must not hold up the other channels) and restart or report the channel lost."""
        if self._stopping or run is not self._run:
            return
        threading.Thread(target=self._after_end, args=(run,), name=f"audio-end-{self.channel_id}",
                         daemon=True).start()

    def _after_end(self, run: _Run) -> None:
        p = run.proc
        err = b""
        try:
            err = p.stderr.read() or b""
        except (OSError, ValueError):
            pass
        rc = p.wait()
        if self._stopping or run is not self._run:
            return
        text = err.decode(errors="replace").strip()
        if text:
            print(f"[audio {self.channel_id}] exited {rc}:\n{text[-4000:]}", file=sys.stderr, flush=True)
        msg = [m for m in text.splitlines() if m.strip() and not m.startswith(("ALSA lib", "Expression"))]
        why = msg[-1].strip() if msg else f"capture process exited with code {rc}"
        reason = f"audio source {self.source!r} stopped: {why}"
        # if the sound server still has the source it was a hiccup (a null sink's monitor can stay silent for
        # ~2 s at start-up, measured) → restart (after 2 failures with parec if installed); if the source is
        # gone → channel lost
        if self._source_exists() and self._restarts < 5:
            self._restarts += 1
            self.stats["restarts"] = self._restarts
            if self._restarts == 2 and shutil.which("parec"):
                self.backend = "parec"
            print(f"[audio {self.channel_id}] capture process failed early ({reason}); restarting with "
                  f"{self.backend}", file=sys.stderr, flush=True)
            with self._life:
                if not self._stopping and run is self._run:
                    self._spawn()
            return
        with self._life:
            if self._stopping or run is not self._run:
                return
            self._run = None
        self.on_lost(self.channel_id, reason)

    def _source_exists(self) -> bool:
        from vdbnb.recorder.pulse import has_source

        return has_source(self.source)
