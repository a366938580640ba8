"""The after-stop accurate pass: speech regions found by VAD over the whole recording, joined and decoded
long-form by Whisper base, words mapped back to their regions (one final utterance per region)."""
from __future__ import annotations

import numpy as np

from .stt import SAMPLE_RATE, WINDOW, Utterance, get_transcriber


def segment_speech(pcm: np.ndarray, threshold: float = 0.5, neg_threshold: float = 0.35,
                   min_silence_s: float = 0.5, pad_s: float = 0.2, min_speech_s: float = 0.25,
                   max_s: float = 25.0) -> list[tuple[int, int]]:
    """Speech regions (sample ranges) of a whole recording, by Silero VAD."""
    from .vad import SileroVAD

    probs = SileroVAD().probs(pcm)
    w = WINDOW
    regions: list[list[int]] = []
    cur: list[int] | None = None
    silent = 0
    for i, p in enumerate(probs):
        if cur is None:
            if p >= threshold:
                cur, silent = [i, i + 1], 0
        else:
            if p >= neg_threshold:
                cur[1], silent = i + 1, 0
            else:
                silent += 1
                if silent * w >= min_silence_s * SAMPLE_RATE:
                    regions.append(cur)
                    cur = None
            if cur is not None and (cur[1] - cur[0]) * w >= max_s * SAMPLE_RATE:
                regions.append(cur)
                cur = None
    if cur is not None:
        regions.append(cur)
    pad = int(pad_s * SAMPLE_RATE)
    n = len(pcm)
    out: list[tuple[int, int]] = []
    for a, b in regions:
        if (b - a) * w < min_speech_s * SAMPLE_RATE:
            continue
        a, b = max(0, a * w - pad), min(n, b * w + pad)
        if out and a <= out[-1][1]:  # padding made two regions overlap: the audio between them is kept once
            a = out[-1][1]
        out.append((a, b))
    return out


ACCURATE_PAD_S = 0.4  # audio kept before and after each speech region in the accurate pass (as faster-whisper)


def accurate_pass(pcm: np.ndarray, t0: float, model: str = "base.en") -> list[Utterance]:
    """Transcribe a whole recording with the accurate model, one final Utterance per speech region.

    The speech regions (Silero VAD, each padded by ``ACCURATE_PAD_S``) are joined end to end, without the
    silences between them, and decoded in one long-form pass (as faster-whisper's ``vad_filter`` does): each
    30 s window of the encoder holds several utterances and the decoder is prompted with the text before it. Whisper is far more
    accurate that way than on one short utterance padded with 30 s of nothing (WER on espeak speech:
    ~3-4 % against ~8-10 % per utterance). Word timestamps map each word back to its region and its time.
    """
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    tr = get_transcriber(model)
    regions = segment_speech(audio, pad_s=ACCURATE_PAD_S)
    if not regions:
        return []
    starts = np.cumsum([0] + [b - a for a, b in regions[:-1]])  # where each region begins in the joined audio
    joined = np.concatenate([audio[a:b] for a, b in regions])
    segs = tr.transcribe(joined, word_timestamps=True, condition_on_previous_text=True,
                         temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0))

    def region_of(start: float, end: float) -> int:
        # The first word after a pause often gets the pause in its timing (it starts early), so a word is
        # placed by its middle or, when it is long, by its last 0.15 s.
        t = max((start + end) / 2, end - 0.15)
        i = int(np.searchsorted(starts, int(t * SAMPLE_RATE), side="right")) - 1
        return min(max(i, 0), len(regions) - 1)

    texts: dict[int, list[str]] = {}
    for sg in segs:
        # a segment without word timings stays whole, in the region of its end
        items = [(w.raw, w.start, w.end) for w in sg.words] or [(" " + sg.text, sg.start, sg.end)]
        for raw, ws, we in items:
            if raw.strip():
                texts.setdefault(region_of(ws, we), []).append(raw)
    out: list[Utterance] = []
    for k in sorted(texts):
        text = "".join(texts[k]).strip()
        if text:
            a, b = regions[k]
            out.append(Utterance(text, t0 + a / SAMPLE_RATE, t0 + b / SAMPLE_RATE, True, tr.engine))
    return out
