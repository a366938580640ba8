"""Issue 12's end to end on the rig: an API-key-shaped secret and a password shown on the real screen (an xterm)
and spoken into the real microphone, captured by vdbnb's recorder, with the official SDK as the backend and
index_visuals / index_audio pointed at an OpenAI-compatible endpoint on this machine that records every
request (what a remote model would receive).

Nothing holds the secrets or any 4-character run of them: no model request (its text, or its frames read back
by OCR), no stored row (either database), no search hit, no websocket message, no webhook body, no export
sidecar or export metadata; and the alert for each secret comes before any of them.

The secrets are random per run (outside checks use other ones). Written: ``sk-live-`` + 32 characters and a
14-character password, every 4-run holding an upper-case letter, a digit and a letter past 'f' (no such run
occurs by chance in an id, a number or prose). Spoken: "My password is <3 words>" and "My API key is <3
words>", words drawn per run from ones the live speech-to-text hears reliably; the test requires the spoken
alerts to fire (the cue was heard), then that no run of those words is anywhere."""
from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from testkit.events import WsRecorder
from testkit.leaks import db_texts, leaked, random_api_key, random_secret, spoken_passphrase, strings
from testkit.llm import RecordingLLM
from testkit.webhooks import WebhookReceiver
from tests.recorder.rigutil import play, tts

videodb = pytest.importorskip("videodb")
SAID = "The delivery truck arrives at the north gate at seven thirty."
PROMPT_V = "What is the user doing on the screen?"
PROMPT_A = "What is being said?"
REPLY = "the user is working in a terminal"
BASELINE = " ".join([SAID, PROMPT_V, PROMPT_A, REPLY, "Deploy checklist for Friday Billing Console export STRIPE_KEY",
                     "redacted password api_key email credit_card private_key transcript audio_index visual_index",
                     "alert capture_session rtstream collection detector fingerprint source_event_id explanation",
                     "triggered confidence window_title ocr_text new_text index_name engine offline extractive",
                     "faster-whisper tiny.en base.en accurate_pass replaces spoken on screen pipeline behind",
                     "connected stopped exported created starting active stopping video audio default websocket",
                     "global wrapper display mic xterm"])


class Window:
    """An xterm with a TrueType font showing ``lines``."""

    def __init__(self, title: str, lines: list[str]):
        script = "; ".join(f"echo '{ln}'" for ln in lines) + "; sleep 600"
        self.proc = subprocess.Popen(["xterm", "-T", title, "-bg", "black", "-fg", "white", "-fa", "DejaVu Sans Mono",
                                      "-fs", "14", "-geometry", "80x8+300+300", "-e", f"bash -c \"{script}\""],
                                     stderr=subprocess.DEVNULL)
        self.wid = None
        t = time.time()
        while time.time() - t < 10 and not self.wid:
            r = subprocess.run(["xdotool", "search", "--name", f"^{title}$"], capture_output=True, text=True)
            self.wid = r.stdout.split()[0] if r.stdout.strip() else None
            time.sleep(0.1)
        assert self.wid, f"window {title} did not appear"
        subprocess.run(["xdotool", "windowactivate", "--sync", self.wid], capture_output=True)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _events(srv, sid: str) -> list[dict]:
    return httpx.get(f"{srv.url}/collection/default/events", headers=srv.headers(),
                     params={"session_id": sid, "limit": 10000}).json()["data"]["events"]


def _wait(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.rig
def test_secrets_on_screen_and_spoken_never_leave(rig, server_factory, tmp_path):
    from vdbnb.capture import SyncCaptureClient
    key, pw = random_api_key(), random_secret(14)
    pw_words = spoken_passphrase(3, avoid=BASELINE)
    key_words = spoken_passphrase(3, avoid=BASELINE + " " + " ".join(pw_words))
    llm, hooks = RecordingLLM(REPLY), WebhookReceiver().start()
    srv = server_factory(env={**llm.env(), "VDBNB_STT_MODEL": "tiny.en"}).start()
    conn = videodb.connect(api_key=srv.api_key, base_url=srv.url)
    ws = WsRecorder(srv)
    wavs = [tts(tmp_path / f"s{i}.wav", s, speed=140) for i, s in enumerate(
        [SAID, "My password is " + " ".join(pw_words) + ".", "My API key is " + " ".join(key_words) + "."])]
    cap = conn.create_capture_session(end_user_id="sec-e2e", callback_url=hooks.url,
                                      ws_connection_id=ws.connection_id)
    client = SyncCaptureClient(conn.generate_client_token(expires_in=600), srv.url)
    win = None
    try:
        ch = client.list_channels()
        display, mic = ch.displays.primary, ch.mics.default
        display.store = mic.store = True
        client.start_session(cap.id, [display, mic], spoolDir=str(tmp_path / "spool"))
        _wait(lambda: conn.get_capture_session(cap.id).status == "active", 30, "the session to be active")
        cap = conn.get_capture_session(cap.id)
        mic_rts, screen_rts = cap.get_rtstream("mic")[0], cap.get_rtstream("screen")[0]
        mic_rts.start_transcript(ws_connection_id=ws.connection_id)
        vidx = screen_rts.index_visuals(prompt=PROMPT_V, ws_connection_id=ws.connection_id,
                                        batch_config={"type": "time", "value": 2, "frame_count": 1})
        mic_rts.index_audio(prompt=PROMPT_A, batch_config={"type": "sentence", "value": 1},
                            ws_connection_id=ws.connection_id)
        event_id = conn.create_event(event_prompt="an API key or a password is visible", label="secret_seen")
        vidx.create_alert(event_id, callback_url=hooks.url)
        win = Window("Billing Console", ["Deploy checklist for Friday", f"export STRIPE_KEY={key}",
                                         f"password: {pw}"])
        time.sleep(2.0)
        for w in wavs:
            play(w, "mic_feed").wait(30)
            time.sleep(2.0)

        want, got = {("api_key", "screen"), ("password", "screen"), ("password", "mic"), ("api_key", "mic")}, set()

        def all_alerts():
            got.clear()
            got.update((e["label"], e["channel_id"]) for e in _events(srv, cap.id)
                       if e["channel"] == "alert" and (e["data"] or {}).get("builtin"))
            return got >= want
        try:
            _wait(all_alerts, 90, "an alert for each secret, on screen and spoken")
        except AssertionError as err:
            heard = [e["text"] for e in _events(srv, cap.id) if e["channel"] == "transcript" and e.get("is_final")]
            raise AssertionError(f"{err}: missing {sorted(want - got)}; final transcripts: {heard}") from None
        _wait(lambda: any(e["channel"] == "audio_index" for e in _events(srv, cap.id))
              and any(e["channel"] == "visual_index" for e in _events(srv, cap.id)), 60, "index results")
    finally:
        if win:
            win.close()
        res = client.stop_session()
        client.shutdown()
    assert res["status"] == "complete", res
    try:
        _wait(lambda: any((e["data"] or {}).get("accurate_pass") for e in _events(srv, cap.id)), 240,
              "the accurate pass")
        exp = conn.get_capture_session(cap.id)
        _wait(lambda: (x := exp.export()).get("export_status") == "exported" and x, 180, "the export")
        hits = []
        for q in ["STRIPE_KEY export", "password", "Billing Console", "API key", " ".join(pw_words),
                  " ".join(key_words), key, pw, SAID]:
            hits += httpx.post(f"{srv.url}/rtstream/collection/default/search", headers=srv.headers(),
                               json={"query": q}).json()["data"]["results"]
        hooks.wait_for(lambda e: any(x.get("event") == "capture_session.exported" for x in e), 60)
        time.sleep(1.0)
    finally:
        ws.close()
        srv.stop()
        llm.stop()
        hooks.stop()

    evs = sorted(_events_db(srv.data_dir), key=lambda e: e["emitted_at"])
    alerts = [e for e in evs if e["channel"] == "alert" and e["data"].get("builtin")]
    assert any("[password redacted]" in (e["text"] or "") for e in evs if e["channel"] == "transcript")
    assert any("Deploy checklist" in (e["data"].get("ocr_text") or "") for e in evs if e["channel"] == "visual_index")
    for a in alerts:  # kind, place, time, fingerprint
        assert a["data"]["fingerprint"].startswith("fp-") and a["data"]["detector"] == a["label"] and a["start"]
    from vdbnb.ai.ocr import ScreenReader
    imgs = llm.images()
    assert imgs, "frames went to the model"
    reader = ScreenReader()
    ocr_of_requests = [" ".join(ln.text for ln in reader.read(im)) for im in imgs]
    # the mask blacked out the secrets' lines, not the frame: the heading above them (a terminal line ~3 px
    # away) still reads in the downscaled JPEG the endpoint got (tests/security/test_redaction.py has the
    # pixel-level check of the same mask)
    assert any("Deploy checklist" in t for t in ocr_of_requests), ("the frames sent were readable",
                                                                    ocr_of_requests)
    sidecars, meta = [], []
    import av
    for p in (srv.data_dir / "exports").rglob("*"):
        if p.is_file() and p.suffix != ".mp4":
            sidecars.append(p.read_bytes().decode("utf-8", "replace"))
        elif p.suffix == ".mp4":
            with av.open(str(p)) as c:
                meta.append(str(c.metadata) + " ".join(str(s.metadata) for s in c.streams))
    sinks = {
        "model request text": [t for _, t in llm.texts()],
        "model request frame (OCR)": ocr_of_requests,
        "stored row": db_texts(srv.data_dir / "vdbnb.sqlite3") + db_texts(srv.data_dir / "search.sqlite3"),
        "search hit": [s for h in hits for s in strings(h)],
        "websocket message": [s for m in ws.msgs for s in strings(m)],
        "webhook body": [r["body"] for r in hooks.received],
        "export sidecar / metadata": sidecars + meta,
    }
    for where, texts in sinks.items():
        blob = "\n".join(texts)
        # the key's runs from its random part on ("sk-live-" is the provider's public prefix, in every key)
        for name, secret in (("API key", key[6:]), ("password", pw)):
            assert not leaked(secret, blob), f"{where}: runs of the {name}: {leaked(secret, blob)}"
        for w in pw_words + key_words:
            assert not leaked(w, blob, ignore_case=True), f"{where}: runs of the spoken word {w!r}"
    # the alert fires before any of them: before its source result is stored/pushed, before any model request
    # made from the screen or the speech, and before the first websocket message of its source
    by_id = {e["id"]: e for e in evs}
    for a in alerts:
        src = by_id.get(a["data"]["source_event_id"])
        assert src is None or src["emitted_at"] >= a["emitted_at"], (a["text"], src and src["channel"])
    t_screen = min(a["emitted_at"] for a in alerts if a["channel_id"] == "screen")
    t_spoken = min(a["emitted_at"] for a in alerts if a["channel_id"] == "mic")
    vis = [t for t, txt in llm.texts() if PROMPT_V in txt and "redacted" in txt]
    aud = [t for t, txt in llm.texts() if PROMPT_A in txt and "redacted" in txt]
    assert vis and min(vis) >= t_screen and aud and min(aud) >= t_spoken
    ws_alert = min(m["t"] for m in ws.msgs if m.get("channel") == "alert")
    ws_redacted = [m["t"] for m in ws.msgs if m.get("channel") in ("transcript", "visual_index", "audio_index")
                   and "redacted" in str(m.get("data"))]
    assert ws_redacted and ws_alert <= min(ws_redacted)


def _events_db(data_dir) -> list[dict]:
    import json
    import sqlite3
    db = sqlite3.connect(f"file:{data_dir / 'vdbnb.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute("SELECT * FROM events")]
    finally:
        db.close()
    for r in rows:
        r["data"] = json.loads(r["data"] or "{}")
    return rows
