import numpy as np
import pytest

from vdbnb.ai.vad import SileroVAD

from .conftest import SR, speak


def test_speech_vs_silence_and_noise():
    vad = SileroVAD()
    x = speak("Hello there, this is a test of the voice detector.")
    p = vad.probs(x)
    assert (p > 0.5).mean() > 0.5
    vad.reset()
    assert vad.probs(np.zeros(SR, np.float32)).max() < 0.2
    vad.reset()
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * SR).astype(np.float32)
    assert (vad.probs(noise) > 0.5).mean() < 0.05


def test_state_is_kept_and_reset():
    vad = SileroVAD()
    x = speak("Keep the recurrent state between windows.")[: 20 * 512]
    a = vad.probs(x)
    vad.reset()
    b = vad.probs(x)
    assert np.allclose(a, b)  # reset gives the same start
    c = vad.probs(x)  # continuing (no reset) differs from a fresh start
    assert not np.allclose(b, c)


def test_window_size_checked():
    with pytest.raises(ValueError, match="512"):
        SileroVAD().speech_prob(np.zeros(100, np.float32))
