"""End of utterance → final transcript on the websocket, through the real server.

Speech (espeak-ng, 8 sentences with 2.5 s pauses, as in shared/reference/peers.md) is encoded by the
recorder's Opus encoder and uploaded over HTTP in real time, fragment by fragment; the websocket listener
timestamps each final transcript when it arrives. Prints p50/p95 latency and live WER beside the goals.

    python bench/bench_live_transcript.py [--pause 2.5] [--sentences 8]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._live import collect, open_session, upload_live  # noqa: E402
from testkit.server import ServerProc  # noqa: E402
from testkit.media import pcm_fragments  # noqa: E402
from testkit.speech import espeak_wav, read_wav, wer  # noqa: E402

SENTENCES = [
    "The quarterly budget review moves to Thursday afternoon.",
    "Please send the signed contract to the legal team before noon.",
    "Our new office opens next month near the central station.",
    "The build failed because the database migration timed out.",
    "Remember to water the plants while I am away on holiday.",
    "She booked a table for six at the Italian restaurant downtown.",
    "The printer on the third floor is out of paper again.",
    "We should rename the variable to make the code easier to read.",
]


FRAGMENT_S = 0.25


def speech_end(pcm: np.ndarray, sr: int) -> float:
    """Seconds from the start of ``pcm`` to the last sample of speech (energy above -40 dBFS)."""
    win = sr // 100
    e = np.sqrt(np.convolve(pcm ** 2, np.ones(win) / win, mode="same"))
    idx = np.nonzero(e > 0.01)[0]
    return (idx[-1] + 1) / sr if idx.size else 0.0


async def run(url: str, key: str, pcm: np.ndarray, ends: list[float], refs: list[str]) -> dict:
    async with httpx.AsyncClient(base_url=url, headers={"x-access-token": key}, timeout=30) as c:
        sid, ch = await open_session(c, "mic:default", "audio")
        t0 = time.time() + 0.5
        frags = pcm_fragments("mic:default", pcm, t0, max_s=FRAGMENT_S)
        await upload_live(c, sid, ch, frags[:1])
        sess = (await c.get(f"/collection/default/capture/session/{sid}")).json()["data"]
        rid = sess["rtstreams"][0]["id"]
        wsurl = (await c.get("/collection/default/websocket")).json()["data"]["websocket_url"]
        import websockets
        finals: list[tuple[float, dict]] = []
        async with websockets.connect(wsurl) as ws:
            conn_id = json.loads(await ws.recv())["connection_id"]
            await c.post(f"/rtstream/{rid}/transcription", json={"action": "start", "ws_connection_id": conn_id})
            rt = collect(ws, "transcript", finals, keep=lambda d: d["is_final"])
            await upload_live(c, sid, ch, frags[1:])
            await asyncio.sleep(5)
            rt.cancel()
        health = (await c.get("/health")).json()["data"]["pipelines"]
    lat = []
    for end in ends:
        t_end = t0 + end
        got = [t for t, d in finals if d["start"] / 1000 <= t_end + 0.3 and d["end"] / 1000 >= t_end - 1.5]
        if got:
            lat.append(min(got) - t_end)
    hyp = " ".join(d["text"] for _, d in finals)
    return {"latencies": lat, "wer": wer(" ".join(refs), hyp), "n_final": len(finals), "health": health}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pause", type=float, default=2.5)
    ap.add_argument("--sentences", type=int, default=8)
    ap.add_argument("--fragment", type=float, default=0.25, help="audio fragment length, s (recorder default 0.25)")
    a = ap.parse_args()
    global FRAGMENT_S
    FRAGMENT_S = a.fragment
    refs = SENTENCES[: a.sentences]
    tmp = Path(tempfile.mkdtemp(prefix="vdbnb-bench-"))
    parts, ends, off = [np.zeros(24000, np.float32)], [], 0.5
    for i, s in enumerate(refs):
        pcm, sr = read_wav(espeak_wav(s, tmp / f"s{i}.wav", rate=48000))
        ends.append(off + speech_end(pcm, sr))
        parts += [pcm, np.zeros(int(48000 * a.pause), np.float32)]
        off += len(pcm) / 48000 + a.pause
    pcm = np.concatenate(parts)
    srv = ServerProc(tmp / "data", env={"VDBNB_ACCURATE_PASS": "0"}).start()
    try:
        res = asyncio.run(run(srv.url, srv.api_key, pcm, ends, refs))
    finally:
        srv.stop()
    lat = np.array(res["latencies"])
    print(f"audio fragments of {a.fragment}s; sentences: {len(refs)}, pauses {a.pause}s, finals received: {res['n_final']}, matched: {len(lat)}")
    if len(lat):
        print(f"end of utterance → final on websocket  p50 {np.percentile(lat, 50):.2f} s (goal ≤ 0.8)   "
              f"p95 {np.percentile(lat, 95):.2f} s (goal ≤ 1.5)")
    print(f"live WER (tiny.en)                     {res['wer'] * 100:.1f} % (goal ≤ 5 %; ≤ 10 % in tests)")
    print(f"transcript pipeline health: {res['health'].get('transcript')}")
    print("peer (shared/reference/peers.md, WhisperLive 0.10.0, same voice, 2.5 s pauses): p50 3.5 s, p95 5.0 s, "
          "WER 15 %")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
