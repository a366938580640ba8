"""Live WER on speech the engine was never tuned on: a held-out and a dev set of 32 sentences each, several
espeak voices, a rate range, noise at 20 dB SNR and music under the speech; several repetitions, each with its
own offsets and noise (so each run cuts the speech at different places); the WORST run is the figure.

    python bench/bench_wer.py [--set dev|heldout|both] [--reps 2] [--only COND,...] [--show]
    python bench/bench_wer.py --realtime [--only "en-us 160"]   # paced like a capture: end -> final latency
    python bench/bench_wer.py --check-load                       # same audio paced vs as fast as possible

Audio path = production: espeak-ng speech resampled to 48 kHz (what a sound server plays and the recorder
captures), background mixed in at 48 kHz, encoded by the recorder's own Opus encoder and cut into its 0.25 s
fragments, packed and unpacked (the wire format), decoded and resampled to 16 kHz by the server's
AudioStreamDecoder, fed to the live StreamingTranscriber the way the transcript pipeline feeds it.

By default fragments are fed as fast as the engine takes them: which finals come out depends only on the
audio (``--check-load`` verifies it: the same audio paced in real time, with interims, must give the same
finals). ``--realtime`` paces fragments at capture speed and measures end of speech -> final (wall clock).
Finals of all sentences are joined and scored against the joined references with Whisper's English
normaliser (tests/helpers.py). HELDOUT must never be used to tune (bench/wer_sets.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench.wer_sets import DEV, HELDOUT  # noqa: E402
from testkit.speech import speak, wer  # noqa: E402

GOAL_WER, GOAL_P95 = 0.08, 1.0
RATE = 48000         # capture rate (the recorder's Opus input)
PAUSE = (1.2, 1.8)   # s of silence between sentences, drawn per sentence
# name -> (espeak voice, words per minute, background)
CONDITIONS = {
    "en-us 160": ("en-us", 160, None),
    "en+f3 150": ("en+f3", 150, None),
    "en-gb 175": ("en-gb", 175, None),
    "en-us 130 (slow)": ("en-us", 130, None),
    "en-us 200 (fast)": ("en-us", 200, None),
    "en-us 160 + noise 20 dB": ("en-us", 160, "noise"),
    "en-us 160 + music 20 dB": ("en-us", 160, "music"),
}
T0 = 1_800_000_000.0


def music(n: int, rng, rate: int = RATE) -> np.ndarray:
    """A synthetic piece: a I-V-vi-IV progression of harmonic-rich chords, 2 s each, with a kick every 0.5 s."""
    t = np.arange(n) / rate
    out = np.zeros(n, np.float32)
    roots = [261.6, 392.0, 440.0, 349.2]
    for k in range(0, n, 2 * rate):
        f = roots[(k // (2 * rate)) % 4]
        seg = slice(k, min(n, k + 2 * rate))
        for m in (1.0, 1.26, 1.5):
            for h in (1, 2, 3):
                out[seg] += (0.3 / h) * np.sin(2 * np.pi * f * m * h * t[seg] + rng.uniform(0, 6.28))
    kn = int(0.15 * rate)
    kick = np.exp(-np.arange(kn) / (0.03 * rate)) * np.sin(2 * np.pi * 60 * np.arange(kn) / rate)
    for k in range(0, n - kick.size, rate // 2):
        out[k:k + kick.size] += kick
    return out


def build(sentences, voice, speed, background, seed=0):
    """48 kHz capture of the sentences with pauses; a run's seed sets its lead-in, pauses and noise.
    Returns (audio, [(speech start s, speech end s)])."""
    rng = np.random.default_rng(seed)
    lead = int(rng.uniform(1.0, 2.0) * RATE)
    parts, spans, pos, speech_pow = [np.zeros(lead, np.float32)], [], lead, []
    for s in sentences:
        a = speak(s, speed=speed, voice=voice, rate=RATE)
        idx = np.nonzero(np.abs(a) > 0.01)[0]
        spans.append(((pos + idx[0]) / RATE, (pos + idx[-1] + 1) / RATE))
        speech_pow.append(float(np.mean(a[idx[0]:idx[-1] + 1] ** 2)))
        gap = int(rng.uniform(*PAUSE) * RATE)
        parts += [a, np.zeros(gap, np.float32)]
        pos += a.size + gap
    x = np.concatenate(parts)
    floor = rng.normal(0, 0.002, x.size).astype(np.float32)
    if background:
        bg = rng.normal(0, 1, x.size).astype(np.float32) if background == "noise" else music(x.size, rng)
        bg *= np.sqrt(np.mean(speech_pow) / 10 ** (20 / 10) / np.mean(bg ** 2))   # 20 dB below the speech
        x = x + bg
    return (x + floor).astype(np.float32), spans


def recorder_fragments(x: np.ndarray, t0: float = T0) -> list:
    """The recorder's encoder and fragmenter (its defaults), fed 0.1 s blocks as a capture callback does; the
    fragments go through the wire format (pack/unpack) as the server stores them."""
    from vdbnb.media.encode import AudioEncoder
    from vdbnb.media.fragmenter import Fragmenter
    from vdbnb.media.fragments import unpack
    from vdbnb.recorder.session import DEFAULT_AUDIO

    enc = AudioEncoder(channels=1, bitrate=DEFAULT_AUDIO["bitrate"], frame_ms=DEFAULT_AUDIO["frame_ms"])
    fr = Fragmenter("mic", "audio", "opus", enc.codec_info, max_s=0.25)
    out, step = [], RATE // 10
    for i in range(0, x.size, step):
        out += fr.add(enc.push(x[i:i + step], t0 + i / RATE))
    out += fr.add(enc.flush())
    out += fr.flush()
    return [unpack(f.pack()) for f in out]


def sentence_of(a: float, b: float, spans) -> int | None:
    best, k_best = 0.0, None
    for k, (s, e) in enumerate(spans):
        ov = min(b, e) - max(a, s)
        if ov > best:
            best, k_best = ov, k
    return k_best


def run(frags, spans, sentences, stt_kw: dict, realtime: bool = False, interims: bool | None = None) -> dict:
    """Feed the fragments to a live StreamingTranscriber as the transcript pipeline does; finals with their
    wall-clock latency after the end of their sentence when ``realtime``."""
    from vdbnb.ai.stt import StreamingTranscriber
    from vdbnb.media.decode import AudioStreamDecoder

    kw = dict(stt_kw)
    if interims is not None:
        kw["interims"] = interims
    st = StreamingTranscriber(**kw)
    dec = AudioStreamDecoder()
    finals: list[tuple[float, object]] = []
    n_interims = 0
    wall0 = time.perf_counter()
    t_start = frags[0].t0
    for f in frags:
        if realtime:  # a fragment reaches the server when its last sample has been captured
            d = wall0 + (f.t1 - t_start) - time.perf_counter()
            if d > 0:
                time.sleep(d)
        pcm, t0 = dec.decode(f)
        for u in st.feed(pcm, t0):
            if u.is_final:
                finals.append((time.perf_counter() - wall0, u))
            else:
                n_interims += 1
    finals += [(time.perf_counter() - wall0, u) for u in st.flush()]
    st.close()
    lat = []
    for k, (s, e) in enumerate(spans):
        mine = [t for t, u in finals if sentence_of(u.start - t_start, u.end - t_start, spans) == k]
        if mine:
            lat.append(max(mine) - e)  # wall0 is the capture time of sample 0 (t_start)
    per = [" ".join(u.text for _, u in finals if sentence_of(u.start - t_start, u.end - t_start, spans) == k)
           for k in range(len(spans))]
    return {"wer": wer(" ".join(sentences), " ".join(u.text for _, u in finals)), "lat": lat, "per": per,
            "finals": [(round(u.start - t_start, 3), round(u.end - t_start, 3), u.text) for _, u in finals],
            "interims": n_interims, "engine": st.engine}


def pct(v, q):
    return float(np.percentile(v, q)) if v else float("nan")


def parse_kw(s: str) -> dict:
    """'final_model=base.en,end_silence_s=0.4' -> kwargs for StreamingTranscriber (numbers/bools parsed)."""
    out = {}
    for item in filter(None, (p.strip() for p in s.split(","))):
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                pass
        else:
            out[k] = {"true": True, "false": False, "none": None}.get(v.lower(), v)
    return out


def warm(stt_kw: dict) -> None:
    from vdbnb.ai.stt import StreamingTranscriber

    x = speak("Warm up the models please.", rate=16000)
    st = StreamingTranscriber(**stt_kw)
    st.feed(np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)]), T0)
    st.flush()
    st.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="dev", choices=["heldout", "dev", "both"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated substrings of condition names")
    ap.add_argument("--stt", default="", help="StreamingTranscriber options, e.g. final_model=base.en")
    ap.add_argument("--compare", default="", help="a second --stt configuration run on the same audio")
    ap.add_argument("--realtime", action="store_true", help="pace fragments at capture speed, with interims")
    ap.add_argument("--check-load", action="store_true",
                    help="feed each run paced (with interims) and as fast as possible: are the finals identical?")
    ap.add_argument("--n", type=int, default=0, help="use only the first N sentences of each set")
    ap.add_argument("--show", action="store_true", help="reference and hypothesis per sentence (not on heldout "
                                                         "while tuning)")
    a = ap.parse_args(argv)
    sets = {"heldout": HELDOUT, "dev": DEV} if a.set == "both" else {a.set: HELDOUT if a.set == "heldout" else DEV}
    want = [w.strip() for w in a.only.split(",") if w.strip()]
    configs = {"A": parse_kw(a.stt)}
    if a.compare:
        configs["B"] = parse_kw(a.compare)
    for c in configs.values():
        warm(c)
    mode = "real time" if a.realtime else "as fast as possible"
    print(f"feeding {mode}; load average {os.getloadavg()[0]:.1f}; configs: "
          + "; ".join(f"{k}: {v or 'defaults'}" for k, v in configs.items()), flush=True)
    rows = []
    for set_name, sents in sets.items():
        sents = sents[: a.n] if a.n else sents
        for ci, (cond, (voice, speed, bg)) in enumerate(CONDITIONS.items()):
            if want and not any(w in cond for w in want):
                continue
            for rep in range(a.reps):
                x, spans = build(sents, voice, speed, bg, seed=1000 * ci + rep + (0 if set_name == "dev" else 500))
                frags = recorder_fragments(x)
                for cname, kw in configs.items():
                    load = os.getloadavg()[0]
                    r = run(frags, spans, sents, kw, realtime=a.realtime or a.check_load,
                            interims=None if (a.realtime or a.check_load) else False)
                    extra = ""
                    if a.check_load:
                        fast = run(frags, spans, sents, kw, realtime=False, interims=False)
                        same = fast["finals"] == r["finals"]
                        extra = f"  finals paced == fast: {'yes' if same else 'NO'}"
                        if not same:
                            for p, q in zip(r["finals"], fast["finals"]):
                                if p != q:
                                    print(f"      paced {p}\n      fast  {q}")
                    rows.append((set_name, cond, rep, cname, r["wer"], pct(r["lat"], 95), load))
                    lat = (f"  p95 end->final {pct(r['lat'], 95):5.2f} s ({len(r['lat'])}/{len(spans)} finals, "
                           f"{r['interims']} interims)") if (a.realtime or a.check_load) else ""
                    print(f"{set_name:8s} {cond:24s} run {rep + 1} {cname}: WER {100 * r['wer']:5.1f} %{lat}"
                          f"  load {load:4.1f}{extra}", flush=True)
                    if a.show:
                        for ref, hyp in zip(sents, r["per"]):
                            if wer(ref, hyp) > 0:
                                print(f"      {100 * wer(ref, hyp):5.1f}%  ref: {ref}\n{'':14}hyp: {hyp}")
    print(f"\nlive WER, worst run per set and config ({mode}; load average now {os.getloadavg()[0]:.1f}, "
          f"during runs {min(r[6] for r in rows):.1f}-{max(r[6] for r in rows):.1f})")
    print(f"{'set':8s} {'cfg':4s} {'worst WER':>10s} {'goal':>7s} {'mean WER':>9s} {'runs':>5s}"
          + (f" {'worst p95':>10s} {'goal':>6s}" if a.realtime or a.check_load else ""))
    for set_name in sets:
        for cname in configs:
            mine = [r for r in rows if r[0] == set_name and r[3] == cname]
            if not mine:
                continue
            worst = max(r[4] for r in mine)
            ok = worst <= GOAL_WER
            line = (f"{set_name:8s} {cname:4s} {100 * worst:9.1f}% {'<= 8%':>7s} "
                    f"{100 * np.mean([r[4] for r in mine]):8.1f}% {len(mine):5d}")
            if a.realtime or a.check_load:
                p95 = max(r[5] for r in mine)
                ok = ok and p95 <= GOAL_P95
                line += f" {p95:9.2f}s {'<= 1s':>6s}"
            print(line + f"  {'OK' if ok else 'MISS'}")
            per_cond = {}
            for r in mine:
                per_cond[r[1]] = max(per_cond.get(r[1], 0.0), r[4])
            print("         worst by condition: " + ", ".join(f"{c} {100 * w:.1f}%" for c, w in per_cond.items()))


if __name__ == "__main__":
    main()
