"""CapturePanel model tests without a browser, on the rig's real screens and PulseAudio (no fakes)."""
import subprocess
import time
from pathlib import Path

import pytest

from vdbnb.events import Event
from vdbnb.widgets import CapturePanel, IterableEventSource, WidgetBundleMissing
from vdbnb.widgets._local_preview import LocalPreviewSource

from .conftest import front_msg, front_update, wait_for

pytestmark = pytest.mark.rig


@pytest.fixture
def speech_wav(tmp_path_factory):
    p = tmp_path_factory.mktemp("wav") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(p), "hello from the microphone meter test, one two three"], check=True)
    return p


@pytest.fixture
def panel(rig, recording_comm):
    src = LocalPreviewSource(thumb_fps=8)
    p = CapturePanel(source=src, thumb_fps=2.0, level_hz=15)
    yield p, recording_comm[-1], src
    p.close()


def test_traits_after_init(panel):
    p, c, _ = panel
    ids = [ch["channel_id"] for ch in p.channels]
    assert ids[:2] == ["display:1", "display:2"] and "mic:default" in ids and "system_audio:default" in ids
    assert p.selected == ids and p.state == "previewing"
    assert p._esm.startswith("var") or "render" in p._esm
    assert p.counts == {"transcript": 0, "index": 0, "alerts": 0, "cells": 0, "events": 0}


def test_thumbnails_are_binary_buffers_and_throttled(panel):
    p, c, _ = panel
    t0 = time.monotonic()

    def mine(cid):
        return [x for x in c.custom("thumb") if x[0] >= t0 and x[1]["channel_id"] == cid]

    for cid in ("display:1", "display:2"):
        assert wait_for(lambda: len(mine(cid)) >= 4, timeout=20), (cid, len(mine(cid)), p.stats)
        got = mine(cid)
        # the source runs at 8 fps; the panel forwards at most one per 1/2 s per display (its pump sends at
        # >= 0.95 of the interval): a minimum spacing, whatever the load (rates: bench/bench_panel.py)
        gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
        assert min(gaps) >= 0.95 * 0.5 - 0.03, (cid, [round(g, 3) for g in gaps])
        at, msg, bufs = got[-1]
        assert "jpeg" not in msg and "jpeg_b64" not in msg  # no base64 in JSON
        assert len(bufs) == 1 and bytes(bufs[0][:2]) == b"\xff\xd8"  # a real JPEG in a binary buffer
        assert msg["width"] == 480 and msg["height"] == 270
    assert p.stats["dropped_thumbs"] > 0  # the excess was dropped, not queued


def test_meter_rate_and_it_follows_real_sound(panel, speech_wav):
    p, c, _ = panel
    assert wait_for(lambda: len([m for _, m, _ in c.custom("levels") if "mic:default" in m["levels"]]) > 5,
                    timeout=8)  # the mic stream is open
    t0, w0 = time.monotonic(), time.time()
    assert wait_for(lambda: any(s[0] > w0 + 2.0 for _, m, _ in c.custom("levels")
                                for s in m.get("samples", {}).get("mic:default", [])), timeout=10)
    lv = [m for at, m, _ in c.custom("levels") if "mic:default" in m["levels"]]
    samples = [s for m in lv for s in m["samples"]["mic:default"]]
    in_window = [s for s in samples if w0 <= s[0] < w0 + 2.0]  # by audio time: late delivery still counts
    assert len(in_window) / 2.0 >= 15, (f"{len(in_window) / 2.0:.1f} meter samples/s", w0,
                                        [round(s[0] - w0, 3) for s in samples], p.stats)
    sent = [at for at, m, _ in c.custom("levels") if at >= t0]
    assert min(b - a for a, b in zip(sent, sent[1:])) >= 0.95 / 15 - 0.02  # batched: one message per 1/15 s at most
    assert [s[0] for s in samples] == sorted(s[0] for s in samples)
    quiet = max(m["levels"]["mic:default"]["rms"] for m in lv)
    t1 = time.monotonic()
    subprocess.run(["paplay", "--device=mic_feed", str(speech_wav)], check=True, timeout=30)
    loud = [m["levels"] for at, m, _ in c.custom("levels") if at >= t1]
    mic = max(x["mic:default"]["rms"] for x in loud if "mic:default" in x)
    sysa = max(x.get("system_audio:default", {"rms": 0})["rms"] for x in loud)
    assert quiet < 0.01 < mic, (quiet, mic)
    assert sysa < 0.01  # speech into the mic does not move the system-audio meter


def test_hello_resends_latest_frames(panel):
    p, c, _ = panel
    assert wait_for(lambda: len(c.custom("thumb")) >= 2)
    n = len(c.custom("thumb"))
    front_msg(p, {"type": "hello"})
    assert wait_for(lambda: len(c.custom("thumb")) >= n + 2, timeout=2)


def test_channel_selection_from_front_end(panel):
    p, c, _ = panel
    front_update(p, selected=["display:2", "mic:default"])
    assert p.selected == ["display:2", "mic:default"]


def test_start_on_preview_only_source_shows_error_with_what_to_do(panel):
    p, c, _ = panel
    front_msg(p, {"type": "action", "action": "start", "channels": ["display:1"]})
    assert wait_for(lambda: len(p.errors) == 1)
    err = p.errors[0]
    assert err["code"] == "PREVIEW_ONLY" and "CaptureClient" in err["hint"]
    assert p.state == "previewing"
    assert c.updates("errors")  # synced to the front end


def test_pause_stops_frames_and_marks_no_stale(panel):
    p, c, src = panel
    p.pause("display:2")
    assert p.paused == ["display:2"]
    time.sleep(0.6)
    t0 = time.monotonic()
    time.sleep(1.5)
    assert not [m for at, m, _ in c.custom("thumb") if at > t0 and m["channel_id"] == "display:2"]
    assert [m for at, m, _ in c.custom("thumb") if at > t0 and m["channel_id"] == "display:1"]
    p.resume("display:2")
    assert wait_for(lambda: [m for at, m, _ in c.custom("thumb") if at > time.monotonic() - 0.6
                             and m["channel_id"] == "display:2"], timeout=3)


def test_stale_warning_when_a_channel_goes_silent(rig, recording_comm):
    src = LocalPreviewSource(thumb_fps=4)
    p = CapturePanel(source=src, stale_after=1.0)
    try:
        assert wait_for(lambda: len(p._last_seen) == 4, timeout=5)
        assert wait_for(lambda: p.stale == [], timeout=3)
        src._paused.add("display:1")  # the source goes silent for this display without the panel knowing
        assert wait_for(lambda: any(s["channel_id"] == "display:1" for s in p.stale), timeout=4)
        s = [s for s in p.stale if s["channel_id"] == "display:1"][0]
        assert s["what"] == "recorder" and "What to do" in s["message"]
        src._paused.discard("display:1")
        assert wait_for(lambda: not p.stale, timeout=4)
    finally:
        p.close()


def test_events_become_transcript_counts_and_dataframes(rig, recording_comm):
    t0 = time.time()
    evs = [
        Event(channel="transcript", channel_id="mic", text="hello", is_final=False, start=t0, end=t0 + 0.5,
              captured_at=t0 + 0.5, emitted_at=t0 + 0.7),
        Event(channel="transcript", channel_id="mic", text="hello world", is_final=True, start=t0, end=t0 + 1,
              captured_at=t0 + 1, emitted_at=t0 + 1.3),
        Event(channel="transcript", channel_id="mic", text="and more", is_final=False, start=t0 + 1.2,
              captured_at=t0 + 1.6, emitted_at=t0 + 1.8),
        Event(channel="visual_index", channel_id="screen", text="a terminal", start=t0, end=t0 + 2),
        Event(channel="audio_index", channel_id="mic", text="greeting", start=t0, end=t0 + 2),
        Event(channel="alert", channel_id="screen", label="terminal_open", text="terminal seen", start=t0 + 2),
    ]
    p = CapturePanel(source=LocalPreviewSource(), events=IterableEventSource(evs), preview=False)
    try:
        assert wait_for(lambda: p.counts.get("events") == 6, timeout=3)
        assert p.counts == {"transcript": 1, "index": 2, "alerts": 1, "cells": 0, "events": 6}
        assert [(x["text"], x["is_final"]) for x in p.transcript] == [("hello world", True), ("and more", False)]
        assert p.alerts[0]["label"] == "terminal_open"
        df = p.events
        assert len(df) == 6 and {"ts", "t", "latency"} <= set(df.columns)
        assert p.transcript_df["text"].tolist() == ["hello world"]
    finally:
        p.close()


def test_missing_bundle_says_how_to_build(monkeypatch, tmp_path):
    from vdbnb.widgets import panel as P
    monkeypatch.setattr(P, "STATIC", Path(tmp_path))
    with pytest.raises(WidgetBundleMissing, match="js/build.py"):
        CapturePanel(source=LocalPreviewSource(), preview=False)
