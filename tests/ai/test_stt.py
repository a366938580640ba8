"""Speech-to-text on real espeak-ng speech with the real Whisper models."""
import numpy as np
import pytest

from vdbnb.ai.stt import StreamingTranscriber, Utterance, get_transcriber
from vdbnb.ai.whisper_models import model_path

from .conftest import SENTENCES, SR, speak, speech_end, wer

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def tiny():
    return get_transcriber("tiny.en")


def test_transcriber_is_cached(tiny):
    assert get_transcriber("tiny.en") is tiny
    assert (model_path("tiny.en") / "model.bin").is_file()


def test_sentences_wer(tiny):
    hyps = []
    for s in SENTENCES:
        segs = tiny.transcribe(speak(s))
        assert segs and all(-1.5 < g.avg_logprob <= 0 for g in segs)
        hyps.append(" ".join(g.text for g in segs))
    assert wer(SENTENCES, hyps) <= 0.10, list(zip(SENTENCES, hyps))


def test_word_timestamps(tiny):
    x = speak("Open the terminal and run the tests.")
    segs = tiny.transcribe(x, word_timestamps=True)
    words = [w for s in segs for w in s.words]
    assert len(words) >= 5
    assert all(0 <= w.start <= w.end <= len(x) / SR + 0.5 for w in words)


@pytest.mark.parametrize("kind", ["silence", "white", "hum"])
def test_non_speech_gives_no_text(tiny, kind):
    rng = np.random.default_rng(7)
    n = 6 * SR
    x = {"silence": np.zeros(n, np.float32),
         "white": rng.normal(0, 0.2, n).astype(np.float32),
         "hum": (0.3 * np.sin(2 * np.pi * 100 * np.arange(n) / SR)).astype(np.float32)}[kind]
    assert tiny.transcribe(x) == []
    st = StreamingTranscriber()
    out = []
    for i in range(0, n, 1600):
        out += st.feed(x[i:i + 1600], T0 + i / SR)
    out += st.flush()
    assert out == []


def _stream(sentences, gap_s=1.2, chunk=1600, **kw):
    """Feed sentences separated by silence; return (utterances with the audio time fed when each came,
    speech end times)."""
    rng = np.random.default_rng(3)
    parts, ends, pos = [np.zeros(int(gap_s * SR), np.float32)], [], int(gap_s * SR)
    for s in sentences:
        a = speak(s)
        ends.append(pos / SR + speech_end(a))
        parts += [a, np.zeros(int(gap_s * SR), np.float32)]
        pos += a.size + int(gap_s * SR)
    x = np.concatenate(parts) + rng.normal(0, 0.002, pos).astype(np.float32)  # a faint noise floor
    st = StreamingTranscriber(**{"blocking": True, **kw})
    got: list[tuple[Utterance, float]] = []
    for i in range(0, x.size, chunk):
        for u in st.feed(x[i:i + chunk], T0 + i / SR):
            got.append((u, (i + chunk) / SR))
    for u in st.flush():
        got.append((u, x.size / SR))
    return got, ends


def test_streaming_interims_then_final_within_bound():
    sents = SENTENCES[:3]
    got, ends = _stream(sents)
    finals = [(u, t) for u, t in got if u.is_final]
    assert len(finals) == len(sents), [u.text for u, _ in got]
    assert wer(sents, [u.text for u, _ in finals]) <= 0.15
    for k, ((u, fed), end) in enumerate(zip(finals, ends)):
        # the final arrives after ~0.3 s of silence (+ one 0.1 s chunk), measured in audio time fed
        assert 0.0 < fed - end <= 0.6, (k, fed, end)
        assert abs((u.end - T0) - end) < 0.25 and u.start < u.end
        assert u.engine == "faster-whisper:tiny.en"
        # an interim of the same utterance came before its final
        before = [v for v, t in got if not v.is_final and v.start == u.start and t <= fed]
        assert before, f"no interim before final {k}"
        assert all(v.text for v in before)


def test_streaming_final_model_writes_the_finals():
    sents = SENTENCES[:1]
    got, _ = _stream(sents, final_model="base.en")
    finals = [u for u, _ in got if u.is_final]
    assert [u.engine for u in finals] == ["faster-whisper:base.en"], [(u.text, u.engine) for u, _ in got]
    assert all(u.engine == "faster-whisper:tiny.en" for u, _ in got if not u.is_final)
    # a transcript of the speech (accuracy itself is measured by bench/bench_wer.py, not on one sentence)
    assert wer(sents, [u.text for u in finals]) <= 0.3


def test_streaming_caps_long_utterances():
    long_text = " ".join(SENTENCES[:4])  # ~16 s of continuous speech
    got, ends = _stream([long_text], max_utterance_s=6.0, interims=False)
    finals = [u for u, _ in got if u.is_final]
    assert len(finals) >= 2
    assert all(u.end - u.start <= 6.2 for u in finals)
    assert wer([long_text], [" ".join(u.text for u in finals)]) <= 0.2


def test_streaming_time_gap_closes_the_utterance():
    st = StreamingTranscriber(interims=False)
    a = speak("This sentence is cut by a gap in the stream.")
    a = a[: a.size // 1024 * 1024]  # whole VAD windows: no remainder carries the clock between feeds
    half, pre = a.size // 2, 16 * 512
    out = st.feed(np.zeros(pre, np.float32), T0)
    out += st.feed(a[:half], T0 + pre / SR)
    out += st.feed(a[half:], T0 + 100.0)  # capture resumed much later
    out += st.feed(np.zeros(SR, np.float32), T0 + 100.0 + (a.size - half) / SR)
    finals = [u for u in out if u.is_final]
    assert finals and finals[0].end < T0 + 50 and finals[-1].start >= T0 + 100.0


@pytest.mark.slow
def test_accurate_pass_base():
    from vdbnb.ai.accurate import accurate_pass
    from vdbnb.ai.whisper_models import base_model_dir

    d = base_model_dir()
    assert (d / "model.bin").stat().st_size > 100_000_000 and (d / "config.json").is_file()
    assert base_model_dir() == d  # joined once
    sents = SENTENCES[:3]
    x = np.concatenate([np.zeros(SR, np.float32)] + [np.concatenate([speak(s), np.zeros(SR, np.float32)])
                                                     for s in sents])
    utts = accurate_pass(x, T0)
    assert [u.is_final for u in utts] == [True] * len(sents)
    assert utts[0].engine == "faster-whisper:base.en"
    assert wer(sents, [u.text for u in utts]) <= 0.10
