"""Transcripts through the real server: espeak speech, encoded by the recorder's Opus encoder, uploaded
over HTTP in 0.5 s fragments at capture pace, transcribed by the pipelines, read with the official SDK."""
from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from testkit.media import pcm_fragments
from testkit.speech import espeak_wav, read_wav, wer
from testkit import wait_for, wait_until

videodb = pytest.importorskip("videodb")
SENTENCES = ["The quarterly budget review moves to Thursday afternoon.",
             "Please send the signed contract to the legal team before noon.",
             "Our new office opens next month near the central station."]


@pytest.mark.slow
def test_live_transcript_via_official_sdk(server, tmp_path):
    conn = videodb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="t")
    tok = conn.generate_client_token(600)
    h = {"x-access-token": tok}
    httpx.post(f"{server.url}/capture/session/start", headers=h, json={"session_id": cap.id, "channels": [
        {"channel_id": "mic:default", "type": "audio", "name": "mic", "store": True}]}).raise_for_status()
    # speech, 2 s of silence between sentences, 2 s of silence at the end
    parts = [np.zeros(48000, np.float32)]
    for i, s in enumerate(SENTENCES):
        pcm, sr = read_wav(espeak_wav(s, tmp_path / f"s{i}.wav", rate=48000))
        parts += [pcm, np.zeros(96000, np.float32)]
    pcm = np.concatenate(parts)
    t0 = time.time()
    frags = pcm_fragments("mic:default", pcm, t0)
    # the first fragment activates the session; then the backend starts the transcript on `active`
    httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h,
               content=frags[0].pack()).raise_for_status()
    cap = conn.get_capture_session(cap.id)
    mic = cap.get_rtstream("mic")[0]
    ws = conn.connect_websocket()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(ws.connect())
    mic.start_transcript(ws_connection_id=ws.connection_id)
    aidx = mic.index_audio(prompt="Which dates, deadlines and places are mentioned?",
                           batch_config={"type": "sentence", "value": 1}, name="logistics")
    assert aidx.extraction_type == "transcript"
    events = []

    async def collect(until):
        async def inner():
            async for m in ws.receive():
                if m.get("channel") == "transcript":
                    events.append((time.time(), m))
        try:
            await asyncio.wait_for(inner(), until)
        except asyncio.TimeoutError:
            pass

    # upload the rest in real time (as a recorder would), while reading the websocket
    async def upload():
        async with httpx.AsyncClient() as c:
            for f in frags[1:]:
                delay = f.t1 - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                (await c.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h,
                              content=f.pack())).raise_for_status()

    async def both():
        await asyncio.gather(upload(), collect(len(pcm) / 48000 + 8))
    loop.run_until_complete(both())
    finals = [m for _, m in events if m["data"]["is_final"]]
    interims = [m for _, m in events if not m["data"]["is_final"]]
    assert len(finals) == len(SENTENCES), [m["data"]["text"] for m in finals]
    hyp = " ".join(m["data"]["text"] for m in finals)
    assert wer(" ".join(SENTENCES), hyp) <= 0.10, hyp
    for m in finals:
        assert m["data"]["end"] > m["data"]["start"] > t0 * 1000  # epoch milliseconds on the websocket
    assert interims and min(m["data"]["emitted_at"] for m in interims) < finals[0]["data"]["emitted_at"]
    # REST: the same finals, in seconds
    recs = mic.get_transcript()["transcription_records"]
    assert [r["text"] for r in recs] == [m["data"]["text"] for m in finals]
    assert all(t0 < r["start"] < r["end"] < t0 + 60 for r in recs)
    loop.run_until_complete(ws.close())
    loop.close()
    # the audio index: one result per sentence, naming its engine
    scenes = aidx.get_scenes()["scenes"]
    assert len(scenes) >= 2 and all(sc["text"] and sc["engine"] for sc in scenes)
    # search by a paraphrase finds the right time window first; the official SDK's shots carry seconds
    shots = mic.search("when was the finance meeting rescheduled").get_shots()
    assert shots and abs(shots[0].start - recs[0]["start"]) < 1.0, [(s.text, s.start) for s in shots]
    shots = mic.search("legal paperwork deadline").get_shots()
    assert shots and abs(shots[0].start - recs[1]["start"]) < 1.0, [(s.text, s.start) for s in shots]
    # after stop, the accurate pass (Whisper base) replaces the live finals and says so
    httpx.post(f"{server.url}/capture/session/{cap.id}/stop", headers=h).raise_for_status()
    # (the pass emits its finals one by one: wait for all of them)
    def accurate_done(recs):
        return len(recs) >= len(SENTENCES) and all("base" in r["engine"] for r in recs)
    recs2 = wait_until(lambda: accurate_done(r := mic.get_transcript()["transcription_records"]) and r, 180, step=0.5)
    recs2 = recs2 or mic.get_transcript()["transcription_records"]
    assert recs2 and all("base" in r["engine"] for r in recs2), recs2
    assert wer(" ".join(SENTENCES), " ".join(r["text"] for r in recs2)) <= 0.10
    shots = mic.search("legal paperwork deadline", filter={"kind": "transcript"}).get_shots()
    assert shots and all("base" in (s.metadata.get("engine") or "") for s in shots), \
        [(s.text, s.metadata) for s in shots]


@pytest.mark.slow
def test_silence_and_noise_give_no_text(server):
    conn = videodb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="t")
    h = {"x-access-token": conn.generate_client_token(600)}
    httpx.post(f"{server.url}/capture/session/start", headers=h, json={"session_id": cap.id, "channels": [
        {"channel_id": "mic:default", "type": "audio"}]}).raise_for_status()
    rng = np.random.default_rng(0)
    pcm = np.concatenate([np.zeros(48000 * 3, np.float32),
                          (0.02 * rng.standard_normal(48000 * 3)).astype(np.float32)])
    frags = pcm_fragments("mic:default", pcm, time.time() - 7)
    httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h,
               content=frags[0].pack()).raise_for_status()
    mic = conn.get_capture_session(cap.id).get_rtstream("mic")[0]
    mic.start_transcript()
    for f in frags[1:]:
        httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h,
                   content=f.pack()).raise_for_status()
    httpx.post(f"{server.url}/capture/session/{cap.id}/stop", headers=h).raise_for_status()
    wait_for(lambda: httpx.get(server.url + "/health").json()["data"]["pipelines"]["transcript"]["processed"]
             >= len(frags), 60, "the transcript pipeline through every fragment")
    time.sleep(1.0)
    assert mic.get_transcript()["transcription_records"] == []
