"""Speech for tests and benches: espeak-ng sentences as wav files or 16 kHz PCM, and word error rate (one WER
implementation for tests and benches)."""
from __future__ import annotations

import functools

import numpy as np


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
