"""A real capture on the rig for the MCP tests: vdbnb's recorder on the rig's display and microphone, a real
server with its real models, speech played into the microphone, a window with generated text and a secret.

The sentences, the window's text and the secret are generated per run (the seed is printed), so the tests
cannot pass on a fixed string.
"""
from __future__ import annotations

import random
import secrets
import string
import subprocess
import time
from dataclasses import dataclass, field

import httpx
import pytest

from testkit.server import ServerProc
from tests.mcp.mcputil import ocr_has

SUBJECTS = ["the delivery truck", "our quarterly review", "the dentist appointment", "the plumber", "the tax advisor",
            "the school concert", "the server migration", "the team lunch", "the car inspection", "the piano lesson",
            "the furniture delivery", "the budget meeting", "the vaccination", "the garden party"]
VERBS = ["moves to", "is scheduled for", "was pushed to", "will happen on", "is booked for"]
WHEN = ["Thursday at nine", "next Monday morning", "Friday afternoon", "the fifth of June", "Tuesday at noon",
        "Wednesday evening", "the end of March", "Saturday at ten"]
WHERE = ["near the north gate", "in the blue meeting room", "at the downtown office", "behind the old library",
         "on the second floor", "by the river park"]
WINDOW_WORDS = ["Ledger", "Orders", "Invoices", "Shipments", "Payroll", "Tickets", "Inventory", "Contracts"]
CITIES = ["Lisbon", "Oslo", "Denver", "Nairobi", "Kyoto", "Montreal", "Valparaiso", "Tallinn"]


def sentences(rng: random.Random, n: int) -> list[str]:
    subj = rng.sample(SUBJECTS, n)
    return [f"{s.capitalize()} {rng.choice(VERBS)} {rng.choice(WHEN)} {rng.choice(WHERE)}." for s in subj]


@dataclass
class Capture:
    server: ServerProc
    session_id: str
    said: list[str]
    t_said: list[float]
    title: str
    shown: str
    secret: str
    private_title: str
    private_text: str
    rng: random.Random
    client: object = None
    window: object = None
    private: object = None
    spare: list[str] = field(default_factory=list)   # sentences kept for later tests

    def events(self, channel: str | None = None) -> list[dict]:
        r = httpx.get(self.server.url + "/collection/default/events", headers=self.server.headers(),
                      params={"session_id": self.session_id, "channel": channel, "limit": 10000}, timeout=30)
        return r.json()["data"]["events"]

    def wait_events(self, pred, timeout: float, what: str, channel: str | None = None) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = self.events(channel)
            if pred(evs):
                return evs
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}: {[(e['channel'], e['text']) for e in evs][-12:]}")


def _screen_text() -> str:
    """OCR of the real display 1, grabbed directly (not through vdbnb's recorder)."""
    import mss
    import numpy as np

    from vdbnb.ai.ocr import ScreenReader
    with (getattr(mss, "MSS", None) or mss.mss)() as sct:
        shot = sct.grab(sct.monitors[1])
    rgb = np.asarray(shot)[:, :, 2::-1]
    return "\n".join(ln.text for ln in ScreenReader().read(np.ascontiguousarray(rgb)))


def _activate(win) -> None:
    deadline = time.time() + 10
    active = None
    while time.time() < deadline:
        win.activate()
        active = subprocess.run(["xdotool", "getactivewindow", "getwindowname"], capture_output=True,
                                text=True).stdout.strip()
        if active == win.title:
            return
        time.sleep(0.3)
    raise AssertionError(f"could not activate {win.title!r} (active: {active!r})")


@pytest.fixture(scope="module")
def capture(rig, tmp_path_factory):
    from vdbnb.capture import SyncCaptureClient
    from rig.tutorial import say, show_window
    seed = random.randrange(1 << 30)
    print(f"\nMCP capture seed {seed}")
    rng = random.Random(seed)
    said = sentences(rng, 3)
    title = f"{rng.choice(WINDOW_WORDS)} Console {rng.randrange(100, 999)}"
    shown = f"ORDER-{rng.randrange(1000, 9999)} shipped to {rng.choice(CITIES)}"
    secret = "sk-live-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    # a window excluded from capture (its title matches the session's privacy rule): never recorded
    private_title = f"Private Notes {rng.randrange(100, 999)}"
    private_text = f"DIARY-{rng.randrange(1000, 9999)} meet {rng.choice(CITIES)} contact"
    tmp = tmp_path_factory.mktemp("mcp")
    server = ServerProc(tmp / "data").start(timeout=60)
    cap = Capture(server, "", said[:2], [], title, shown, secret, private_title, private_text, rng, spare=said[2:])
    try:
        h = server.headers()
        d = httpx.post(server.url + "/collection/default/capture/session", json={"end_user_id": "mcp-test"},
                       headers=h, timeout=10).json()["data"]
        cap.session_id = d.get("session_id") or d["id"]
        token = httpx.post(server.url + "/capture/session/token", json={}, headers=h, timeout=10).json()["data"]["token"]
        cap.client = SyncCaptureClient(token, server.url)
        ch = cap.client.list_channels()
        display, mic = ch.displays.primary, ch.mics.default
        display.store = mic.store = True
        cap.client.start_session(cap.session_id, [display, mic], spoolDir=str(tmp / "spool"),
                                 privacy={"exclude_windows": ["^Private Notes"]})
        cap.wait_events(lambda evs: any(e["event"] == "capture_session.active" for e in evs), 30, "active")
        sess = httpx.get(f"{server.url}/collection/default/capture/session/{cap.session_id}", headers=h,
                         timeout=10).json()["data"]
        for r in sess["rtstreams"]:
            if r["channel_id"] == "screen":
                httpx.post(f"{server.url}/rtstream/{r['id']}/index/scene", headers=h, timeout=30, json={
                    "extraction_type": "time", "extraction_config": {"time": 2, "frame_count": 1},
                    "prompt": "What is on the screen?"}).raise_for_status()
            else:
                httpx.post(f"{server.url}/rtstream/{r['id']}/transcription", headers=h, timeout=30,
                           json={"action": "start"}).raise_for_status()
        cap.private = show_window(private_title, [private_text], display=1, x=300, y=600)
        cap.window = show_window(title, [shown, f"export STRIPE_KEY={secret}"], display=1)
        _activate(cap.window)
        time.sleep(1.0)
        assert ocr_has(private_text, _screen_text()), "the excluded window is on the real screen (a control)"
        for s in cap.said:
            cap.t_said.append(say(s))
            time.sleep(1.5)
        cap.wait_events(lambda evs: sum(1 for e in evs if e["is_final"]) >= len(cap.said), 60, "final transcripts",
                        channel="transcript")
        cap.wait_events(lambda evs: any(title in ((e["data"] or {}).get("window_title") or "") for e in evs), 60,
                        "a visual event with the window title", channel="visual_index")
        yield cap
    finally:
        for w in (cap.window, cap.private):
            if w is not None:
                w.close()
        if cap.client is not None:
            try:
                cap.client.stop_session()
            finally:
                cap.client.shutdown()
        server.stop()
