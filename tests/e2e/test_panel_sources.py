"""The panel's real sources on the rig: the recorder's previews before recording, a capture that starts the
AI by itself, and the server's events arriving through the websocket listener."""
from __future__ import annotations

import threading
import time

import pytest

import vdbnb
from vdbnb.widgets.recorder_source import recorder_sources
from tests.recorder.rigutil import play, tts


@pytest.mark.slow
@pytest.mark.rig
def test_recorder_source_and_server_events(rig, server, tmp_path):
    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    src, events = recorder_sources(conn, spoolDir=str(tmp_path / "spool"))
    got: dict[str, list] = {"thumbnail": [], "audio-level": []}
    evs = []
    lock = threading.Lock()

    def on_preview(kind, payload):
        with lock:
            got.setdefault(kind, []).append(payload)
    src.subscribe(on_preview)
    events.subscribe(evs.append)
    try:
        chans = src.list_channels()
        ids = [c["channel_id"] for c in chans]
        assert "display:1" in ids and "display:2" in ids and "mic:default" in ids
        src.start_preview()
        deadline = time.time() + 15
        while time.time() < deadline and len([p for p in got["audio-level"] if p["channel_id"] == "mic:default"]) < 5:
            time.sleep(0.1)
        time.sleep(2.0)
        with lock:
            thumbs = [p for p in got["thumbnail"] if p["channel_id"] == "display:2"]
            levels = [p for p in got["audio-level"] if p["channel_id"] == "mic:default"]
        assert thumbs and thumbs[-1]["jpeg"][:2] == b"\xff\xd8"   # binary JPEG, before any recording
        assert len(levels) >= 10, levels[-3:]   # meters flow before recording (their rate: bench_recorder.py)
        sess = src.start(["display:1", "mic:default"])
        sess.wait_for("active", timeout=20)
        play(tts(tmp_path / "s.wav", "The library closes early on public holidays."), "mic_feed").wait(15)
        deadline = time.time() + 25
        while time.time() < deadline and not any(e.channel == "transcript" and e.is_final for e in evs):
            time.sleep(0.2)
        finals = [e for e in evs if e.channel == "transcript" and e.is_final]
        assert finals and "library" in finals[0].text.lower(), [(e.channel, e.event, e.text) for e in evs]
        assert any(e.channel == "capture_session" and e.event == "capture_session.active" for e in evs)
        res = src.stop()
        assert res["status"] == "complete"
        assert src.session.status in ("stopped", "exported")
    finally:
        events.close()
        src.close()
