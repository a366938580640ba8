import threading

import pandas as pd

from vdbnb.events import COLUMNS, Event
from vdbnb.frames import FRAME_COLUMNS, LiveFrame, events_frame, transcript_frame

T0 = 1_790_000_000.0


def make_events():
    return [
        Event(channel="capture_session", event="capture_session.active", session_id="cap-1", emitted_at=T0 + 0.2),
        Event(channel="transcript", session_id="cap-1", channel_id="mic", text="hello", is_final=False,
              start=T0 + 1.0, end=T0 + 1.5, captured_at=T0 + 1.5, emitted_at=T0 + 1.8),
        Event(channel="transcript", session_id="cap-1", channel_id="mic", text="hello world", is_final=True,
              start=T0 + 1.0, end=T0 + 2.0, captured_at=T0 + 2.0, emitted_at=T0 + 2.4, engine="whisper-tiny.en"),
        Event(channel="visual_index", session_id="cap-1", channel_id="screen", text="a terminal",
              start=T0 + 3.0, end=T0 + 5.0, captured_at=T0 + 5.0, emitted_at=T0 + 6.0),
        Event(channel="alert", session_id="cap-1", channel_id="screen", label="terminal_open", confidence=0.9,
              start=T0 + 4.0, captured_at=T0 + 4.0, emitted_at=T0 + 6.5),
    ]


def test_events_frame_schema_and_derived_columns():
    df = events_frame(make_events(), session_start=T0)
    assert list(df.columns) == FRAME_COLUMNS == COLUMNS + ["ts", "t", "latency", "kind"]
    assert len(df) == 5
    assert df["kind"].tolist() == ["capture_session", "transcript", "transcript", "visual_index", "alert"]
    assert str(df["ts"].dt.tz) == "UTC"
    assert df.loc[2, "ts"] == pd.Timestamp(T0 + 1.0, unit="s", tz="UTC")
    assert df["t"].round(3).tolist() == [0.2, 1.0, 1.0, 3.0, 4.0]
    assert round(df.loc[2, "latency"], 3) == 0.4
    assert pd.isna(df.loc[0, "latency"])  # session events carry no capture time
    assert df.attrs["session_start"] == T0
    assert df["is_final"].dtype == "boolean"


def test_events_frame_without_session_start_and_empty():
    df = events_frame(make_events()[1:])
    assert df["t"].min() == 0.0
    empty = events_frame([])
    assert list(empty.columns) == FRAME_COLUMNS and len(empty) == 0


def test_events_frame_accepts_row_dicts():
    rows = [e.row() for e in make_events()]
    assert events_frame(rows, T0).drop(columns=["id"]).equals(events_frame(make_events(), T0).drop(columns=["id"]))


def test_transcript_frame_final_only():
    tf = transcript_frame(events_frame(make_events(), T0))
    assert tf["text"].tolist() == ["hello world"]
    assert tf.loc[0, "t"] == 1.0


def test_liveframe_concurrent_appends_and_snapshots():
    lf = LiveFrame(session_start=T0)
    n_threads, per = 4, 500

    def writer(k):
        for i in range(per):
            lf.append(Event(channel="transcript", text=f"{k}-{i}", is_final=True, start=T0 + i,
                            captured_at=T0 + i, emitted_at=T0 + i + 0.3))

    snaps = []
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        snaps.append(len(lf.snapshot()))
    for th in threads:
        th.join()
    df = lf.snapshot()
    assert len(df) == len(lf) == n_threads * per
    assert df["text"].is_unique
    assert snaps == sorted(snaps)  # snapshots only grow
    df.loc[0, "text"] = "changed"  # a snapshot is a copy
    assert lf.snapshot().loc[0, "text"] != "changed"


def test_scenes_frame_speaks_utc_and_seconds_from_the_start():
    from vdbnb.frames import scenes_frame
    t0 = 1_795_835_000.0
    recs = [{"start": t0 + 12.5, "end": t0 + 14.5, "text": "Budget review on Thursday", "engine": "e",
             "metadata": {"ocr_text": "INVOICE-4471", "window_title": "Billing"}},
            {"start": t0 + 20.0, "end": t0 + 21.0, "description": "a window moved", "engine": "e", "metadata": None}]
    df = scenes_frame(recs, session_start=t0)
    assert list(df.columns[:3]) == ["ts", "t", "duration"]
    assert str(df["ts"].dt.tz) == "UTC" and df["ts"][0].isoformat() == "2026-11-28T03:03:32.500000+00:00"
    assert df["t"].tolist() == [12.5, 20.0] and df["duration"].tolist() == [2.0, 1.0]
    assert df["ocr_text"][0] == "INVOICE-4471" and df["window_title"][0] == "Billing" and df["text"][1] == "a window moved"
    assert scenes_frame(recs)["t"].tolist() == [0.0, 7.5]      # no session start given: from the first scene
