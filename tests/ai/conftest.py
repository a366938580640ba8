"""Fixtures for the AI engine tests: real espeak-ng speech at 16 kHz, a word error rate, rendered screens."""
from __future__ import annotations

import functools
import os
import shutil

import numpy as np
import pytest

from testkit.speech import edit_distance, speak_16k, words as norm_words  # one WER implementation

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded at run time

SR = 16000
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"

SENTENCES = [
    "Please send the quarterly report to the finance team before Friday.",
    "Our new dashboard shows live metrics for every customer account.",
    "The meeting has been moved to three o'clock in the large conference room.",
    "She opened the settings panel and turned on dark mode.",
    "We need to fix the login bug before the next release.",
]


@functools.lru_cache(maxsize=64)
def _speak(text: str, speed: int) -> bytes:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: apt-get install espeak-ng")
    return speak_16k(text, speed).tobytes()


def speak(text: str, speed: int = 160) -> np.ndarray:
    """espeak-ng speech as float32 16 kHz mono."""
    return np.frombuffer(_speak(text, speed), np.float32).copy()




def wer(refs: list[str], hyps: list[str]) -> float:
    errs = sum(edit_distance(norm_words(r), norm_words(h)) for r, h in zip(refs, hyps))
    return errs / max(1, sum(len(norm_words(r)) for r in refs))


def speech_end(x: np.ndarray, thr: float = 0.01) -> float:
    """Seconds from the start of ``x`` to its last sample louder than ``thr``."""
    idx = np.nonzero(np.abs(x) > thr)[0]
    return float(idx[-1] + 1) / SR if idx.size else 0.0
