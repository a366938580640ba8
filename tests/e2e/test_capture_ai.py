"""The whole vertical on the rig: the official SDK as backend, vdbnb's CaptureClient + recorder capturing the
rig's real screens and microphone, the server's pipelines, live results on the websocket.

Speech played into the microphone comes back as final transcripts (after interims); a window with known
text and a secret on screen yields a visual event with the text and window title and an alert; searching
a paraphrase finds the right moment and its clip plays; the session exports."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from testkit.speech import wer
from tests.recorder.rigutil import Xterm, play, tts


class Window(Xterm):
    """An xterm with a normal-size TrueType font (the default bitmap font is smaller than any real UI)."""

    def __init__(self, title: str, lines: list[str]):
        import subprocess
        script = "; ".join(f"echo '{ln}'" for ln in lines) + "; sleep 600"
        self.title = title
        self.proc = subprocess.Popen(["xterm", "-T", title, "-bg", "black", "-fg", "white", "-fa", "DejaVu Sans Mono",
                                      "-fs", "14", "-geometry", "70x8+300+300", "-e", f"bash -c \"{script}\""],
                                     stderr=subprocess.DEVNULL)
        self.wid = None
        t = time.time()
        while time.time() - t < 10 and not self.wid:
            r = subprocess.run(["xdotool", "search", "--name", f"^{title}$"], capture_output=True, text=True)
            self.wid = r.stdout.split()[0] if r.stdout.strip() else None
            time.sleep(0.1)
        assert self.wid, f"window {title} did not appear"

videodb = pytest.importorskip("videodb")
SAID = ["The delivery truck arrives at the north gate at seven thirty.",
        "Remind me to renew the passport before the end of March."]
SHOWN = "INVOICE-4471 overdue since Monday"
SECRET = "sk-live-4fQ9zT7pWm2Lk8Xv3Rb6Nc1Yd5Hs0Ga"


class WsCollector:
    """The official SDK's websocket on a background thread."""

    def __init__(self, conn):
        self.ws = conn.connect_websocket()
        self.msgs: list[tuple[float, dict]] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _run(self):
        await self.ws.connect()
        self.ready.set()
        try:
            async for m in self.ws.receive():
                self.msgs.append((time.time(), m))
        except Exception:
            pass

    def of(self, channel: str) -> list[dict]:
        return [m for _, m in self.msgs if m.get("channel") == channel]

    def wait(self, pred, timeout: float, what: str):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; got {[(m.get('channel'), (m.get('data') or {}).get('text')) for _, m in self.msgs][-15:]}")


@pytest.mark.slow
@pytest.mark.rig
def test_capture_to_ai_on_the_rig(rig, server, tmp_path):
    from vdbnb.capture import SyncCaptureClient
    conn = videodb.connect(api_key=server.api_key, base_url=server.url)
    ws = WsCollector(conn)
    cap = conn.create_capture_session(end_user_id="e2e", ws_connection_id=ws.ws.connection_id)
    token = conn.generate_client_token(expires_in=600)
    wavs = [tts(tmp_path / f"said{i}.wav", s, speed=155) for i, s in enumerate(SAID)]
    client = SyncCaptureClient(token, server.url)
    win = None
    try:
        ch = client.list_channels()
        display, mic = ch.displays.primary, ch.mics.default
        display.store = mic.store = True
        client.start_session(cap.id, [display, mic], spoolDir=str(tmp_path / "spool"))
        ws.wait(lambda w: any(m["event"] == "capture_session.active" for m in w.of("capture_session")), 20,
                "capture_session.active")
        cap = conn.get_capture_session(cap.id)
        mic_rts, screen_rts = cap.get_rtstream("mic")[0], cap.get_rtstream("screen")[0]
        mic_rts.start_transcript(ws_connection_id=ws.ws.connection_id)
        idx = screen_rts.index_visuals(prompt="What is on the screen?", ws_connection_id=ws.ws.connection_id,
                                       batch_config={"type": "time", "value": 2, "frame_count": 1})
        win = Window("Billing Console", [SHOWN, f"export STRIPE_KEY={SECRET}"])
        import subprocess
        deadline = time.time() + 10
        while time.time() < deadline:  # the window must be the active one: its title is the window title
            win.activate()
            active = subprocess.run(["xdotool", "getactivewindow", "getwindowname"], capture_output=True,
                                    text=True).stdout.strip()
            if active == "Billing Console":
                break
            time.sleep(0.3)
        assert active == "Billing Console", active
        time.sleep(1.0)
        t_said = []
        for w in wavs:
            t_said.append(time.time())
            play(w, "mic_feed").wait(20)
            time.sleep(2.0)
        ws.wait(lambda w: len([m for m in w.of("transcript") if m["data"]["is_final"]]) >= len(SAID), 30,
                "final transcripts")
        ws.wait(lambda w: any("4471 overdue" in (m["data"].get("ocr_text") or "")
                              and "Billing Console" in (m["data"].get("window_title") or "")
                              for m in w.of("visual_index")), 30, "a visual event with the window's text and title")
        ws.wait(lambda w: any(m["data"].get("label") == "api_key" for m in w.of("alert")), 15, "a secret alert")
    finally:
        if win:
            win.close()
        res = client.stop_session()
        client.shutdown()
    assert res["status"] == "complete" and not res["unacked"], res
    finals = [m for m in ws.of("transcript") if m["data"]["is_final"]]
    interims = [m for m in ws.of("transcript") if not m["data"]["is_final"]]
    assert interims, "interim transcripts arrive while someone speaks"
    assert wer(" ".join(SAID), " ".join(m["data"]["text"] for m in finals[:len(SAID)])) <= 0.15
    assert finals[0]["data"]["start"] / 1000 >= t_said[0] - 1.0
    vis = next(m for m in ws.of("visual_index") if "4471 overdue" in (m["data"].get("ocr_text") or "")
               and "Billing Console" in (m["data"].get("window_title") or ""))
    assert "Billing Console" in vis["data"]["text"]  # the event's text names the window
    assert SECRET not in str(ws.msgs), "the secret never leaves the pipeline unredacted"
    # search: a paraphrase finds the spoken moment; on-screen text by keyword; the clip plays
    shots = mic_rts.search("when does the lorry come").get_shots()
    assert shots and abs(shots[0].start - t_said[0]) < 4.0, [(s.text, s.start - t_said[0]) for s in shots]
    vshots = screen_rts.search("4471 overdue").get_shots()
    assert vshots
    r = httpx.get(shots[0].generate_stream())
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    # export: the session becomes exported with a playable video
    exp = conn.get_capture_session(cap.id)
    deadline = time.time() + 60
    d = exp.export()
    while d.get("export_status") == "exporting" and time.time() < deadline:
        time.sleep(0.5)
        d = exp.export()
    assert d["export_status"] == "exported" and d["video_id"].startswith("m-"), d
    assert httpx.get(d["stream_url"], follow_redirects=True).status_code == 200   # as a player does
    assert idx.get_scenes()["scenes"]
