"""Seeing the screen through the real server: H.264 frames with known text and a window title →
index_visuals (official SDK) → visual_index events with that text and title; a secret shown → an alert
before the text is stored (and redacted); on-screen keywords are searchable; the clip URL plays."""
from __future__ import annotations

import time

import httpx
import pytest

from testkit.media import screen_fragments, text_image
from testkit.webhooks import WebhookReceiver
from testkit import wait_until

videodb = pytest.importorskip("videodb")


def wait_events(server, sid, channel, pred, timeout=60):
    def events():
        return httpx.get(f"{server.url}/collection/default/events", headers=server.headers(),
                         params={"session_id": sid, "channel": channel}).json()["data"]["events"]
    evs = wait_until(lambda: pred(e := events()) and e, timeout, step=0.3)
    assert evs, f"no matching {channel} events in {timeout}s: {[e['text'] for e in events()]}"
    return evs


@pytest.mark.slow
def test_screen_text_title_alert_and_search(server):
    conn = videodb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="v")
    h = {"x-access-token": conn.generate_client_token(600)}
    httpx.post(f"{server.url}/capture/session/start", headers=h, json={"session_id": cap.id, "channels": [
        {"channel_id": "display:1", "type": "video", "name": "Display 1", "store": True}]}).raise_for_status()
    t0 = time.time()
    editor = ({"window_title": "deploy.py - Visual Studio Code", "app": "code"},
              ["def rotate_credentials(region):", "    ERR_QUOTA_EXCEEDED_7731 raised by billing", "    return True"])
    term = ({"window_title": "Terminal - ops@build", "app": "xterm"},
            ["$ export OPENAI_API_KEY=sk-proj-Zq8rT2vLm9XwK4bN7cYp3JfH6dS1aE0u", "$ make release"])
    frames = [(text_image(editor[1]), editor[0])] * 8 + [(text_image(term[1], dark=True), term[0])] * 8
    frags = screen_fragments("display:1", frames, t0)
    httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h,
               content=frags[0].pack()).raise_for_status()
    screen = conn.get_capture_session(cap.id).get_rtstream("screen")[0]
    idx = screen.index_visuals(prompt="What is the user working on? Note any error codes.",
                               batch_config={"type": "time", "value": 2, "frame_count": 1}, name="screen")
    assert idx.rtstream_index_id.startswith("idx-")
    event_id = conn.create_event(event_prompt="an API key or secret is visible", label="secret_on_screen")
    hooks = WebhookReceiver().start()
    alert_id = idx.create_alert(event_id, callback_url=hooks.url)
    assert alert_id and idx.list_alerts()[0]["status"] == "enabled"
    for f in frags[1:]:
        httpx.post(f"{server.url}/capture/session/{cap.id}/fragment", headers=h,
                   content=f.pack()).raise_for_status()
    evs = wait_events(server, cap.id, "visual_index", lambda e: len(e) >= 2)
    first, second = evs[0], evs[1]
    assert "Visual Studio Code" in first["text"]
    assert "ERR_QUOTA_EXCEEDED_7731" in first["data"] or "ERR_QUOTA_EXCEEDED_7731" in first["text"]
    assert "Terminal" in second["text"]
    assert first["engine"] and first["captured_at"] and first["processed_at"] and first["emitted_at"]
    # the secret: an alert, and the stored text never holds the key
    alerts = wait_events(server, cap.id, "alert", lambda e: any(a["label"] == "api_key" for a in e))
    assert any(a["label"] == "secret_on_screen" for a in alerts), [a["label"] for a in alerts]
    assert all(a["confidence"] >= 0.5 for a in alerts)
    hook = hooks.wait_for(lambda e: any(x.get("label") == "secret_on_screen" for x in e))[0]
    assert hook["event_id"] == event_id and hook["confidence"] >= 0.5 and hook["timestamp"]
    hooks.stop()
    raw = (server.data_dir / "vdbnb.sqlite3").read_bytes()
    wal = server.data_dir / "vdbnb.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"Zq8rT2vLm9XwK4bN7cYp3JfH6dS1aE0u" not in raw
    # scenes via the SDK, search by on-screen keyword, the clip plays
    scenes = idx.get_scenes()["scenes"]
    assert len(scenes) >= 2
    res = screen.search("ERR_QUOTA_EXCEEDED_7731")
    shots = res.get_shots()
    assert shots and shots[0].start <= t0 + 4.5
    url = shots[0].generate_stream()
    r = httpx.get(url)
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    # re-index the stored media of the stopped session with a new prompt: a second, independent index
    httpx.post(f"{server.url}/capture/session/{cap.id}/stop", headers=h).raise_for_status()
    idx2 = screen.index_visuals(prompt="Which commands were typed?", name="commands")
    evs2 = wait_events(server, cap.id, "visual_index",
                       lambda e: len([x for x in e if x["index_id"] == idx2.rtstream_index_id]) >= 2)
    mine = [x for x in evs2 if x["index_id"] == idx2.rtstream_index_id]
    assert "Visual Studio Code" in mine[0]["text"] and "Terminal" in mine[1]["text"]
    assert len([x for x in evs2 if x["index_id"] == idx.rtstream_index_id]) == len(evs)  # the first is untouched
    assert {s.rtstream_index_id for s in screen.list_scene_indexes()} == {idx.rtstream_index_id,
                                                                          idx2.rtstream_index_id}
