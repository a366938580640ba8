"""Voice activity detection: Silero VAD (the ONNX file shipped inside faster-whisper) on onnxruntime."""
from __future__ import annotations

import functools
import os
import threading

import numpy as np

from . import missing, ort_session_options

SAMPLE_RATE = 16000
WINDOW = 512  # samples per call (32 ms at 16 kHz)
_CONTEXT = 64  # samples of the previous window the model expects in front of each window


@functools.lru_cache(maxsize=1)
def _session():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise missing("onnxruntime") from e
    try:
        from faster_whisper.utils import get_assets_path
    except ImportError as e:
        raise missing("faster-whisper") from e
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    if not os.path.exists(path):
        raise RuntimeError(f"Silero VAD model not found at {path}: reinstall faster-whisper>=1.2")
    return ort.InferenceSession(path, sess_options=ort_session_options(1), providers=["CPUExecutionProvider"])


class SileroVAD:
    """Streaming Silero VAD. Feed consecutive 512-sample windows; the recurrent state is kept between calls."""

    def __init__(self) -> None:
        self._sess = _session()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the recurrent state (start of a new, unrelated stream)."""
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._ctx = np.zeros(_CONTEXT, np.float32)

    def speech_prob(self, chunk: np.ndarray) -> float:
        """Probability (0..1) that this 32 ms window (512 float32 samples at 16 kHz) holds speech."""
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if x.shape[0] != WINDOW:
            raise ValueError(f"SileroVAD.speech_prob needs {WINDOW} samples at 16 kHz, got {x.shape[0]}")
        inp = np.concatenate([self._ctx, x])[None, :]
        with self._lock:
            prob, self._h, self._c = self._sess.run(None, {"input": inp, "h": self._h, "c": self._c})
        self._ctx = x[-_CONTEXT:].copy()
        return float(np.asarray(prob).reshape(-1)[0])

    def probs(self, pcm: np.ndarray) -> np.ndarray:
        """Speech probability for each whole 512-sample window of ``pcm`` (continuing the state)."""
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        n = x.shape[0] // WINDOW
        return np.array([self.speech_prob(x[i * WINDOW:(i + 1) * WINDOW]) for i in range(n)], np.float32)
