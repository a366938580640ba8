"""CapturePanel() on the real recorder + a real vdbnb server (rig), without a browser."""
import subprocess
import time

import pytest

from .conftest import front_msg, wait_for

pytestmark = [pytest.mark.rig, pytest.mark.slow]


def test_pick_channels_hides_devices_behind_aliases():
    from vdbnb.widgets.adapters import pick_channels
    chans = [  # the rig's channels as the recorder lists them
        {"channel_id": "mic:default", "type": "audio", "category": "mic", "alias": True, "is_default": True,
         "source": "virtual_mic", "name": "Default microphone"},
        {"channel_id": "mic:virtual_mic", "type": "audio", "category": "mic", "alias": False, "is_default": True,
         "source": "virtual_mic", "name": "Virtual_Microphone"},
        {"channel_id": "display:1", "type": "video", "category": "screen", "alias": False, "is_default": True,
         "source": None, "name": "Display 1"},
        {"channel_id": "display:2", "type": "video", "category": "screen", "alias": False, "is_default": False,
         "source": None, "name": "Display 2"},
        {"channel_id": "system_audio:default", "type": "audio", "category": "system_audio", "alias": True,
         "is_default": True, "source": "system_out.monitor", "name": "System audio"},
        {"channel_id": "system_audio:system_out.monitor", "type": "audio", "category": "system_audio",
         "alias": False, "is_default": True, "source": "system_out.monitor", "name": "Monitor of System_Output"},
        {"channel_id": "system_audio:mic_feed.monitor", "type": "audio", "category": "system_audio",
         "alias": False, "is_default": False, "source": "mic_feed.monitor", "name": "Monitor of Mic_Feed"},
    ]
    shown, ticked = pick_channels(chans)
    assert [c["channel_id"] for c in shown] == ["mic:default", "display:1", "display:2", "system_audio:default",
                                                 "system_audio:mic_feed.monitor"]
    assert ticked == ["mic:default", "display:1", "display:2", "system_audio:default"]


def test_panel_records_through_recorder_and_server(rig, server, recording_comm, monkeypatch, tmp_path):
    monkeypatch.setenv("VDBNB_URL", server.url)
    monkeypatch.setenv("VDBNB_API_KEY", server.api_key)
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), "The delivery truck arrives at the north gate."],
                   check=True)
    from vdbnb.widgets import CapturePanel
    from vdbnb.widgets.adapters import RecorderSource
    p = CapturePanel()
    c = recording_comm[-1]
    try:
        assert isinstance(p.source, RecorderSource) and not p.errors, p.errors
        assert p.selected == ["mic:default", "display:1", "display:2", "system_audio:default"]
        assert wait_for(lambda: {m["channel_id"] for _, m, _ in c.custom("thumb")} >= {"display:1", "display:2"})
        assert wait_for(lambda: any("mic:default" in m["levels"] for _, m, _ in c.custom("levels")))
        _, msg, bufs = c.custom("thumb")[-1]
        assert bytes(bufs[0][:2]) == b"\xff\xd8" and "jpeg_b64" not in msg  # base64 from the pipe → binary
        front_msg(p, {"type": "action", "action": "start", "channels": ["mic:default", "display:1"]})
        assert wait_for(lambda: p.state == "recording" and p.status == "session active", timeout=30), \
            (p.state, p.status, p.errors)
        assert p.session_id.startswith("cap-") and p.session.id == p.session_id
        time.sleep(1.0)
        subprocess.run(["paplay", "--device=mic_feed", str(wav)], check=True, timeout=60)
        assert wait_for(lambda: p.counts.get("transcript", 0) >= 1, timeout=30), p.counts
        line = [x for x in p.transcript if x["is_final"]][-1]
        assert "truck" in line["text"].lower() and line["channel_id"] == "mic"
        res = p.stop()
        assert p.state == "stopped" and res["status"] == "complete" and not res["unacked"], res
        df = p.events
        assert {"capture_session", "transcript"} <= set(df["channel"])
        tr = p.transcript_df
        assert len(tr) >= 1 and tr["latency"].between(0, 10).all() and (tr["t"] > 0).all()
        assert (df["session_id"].dropna() == p.session_id).all()
        import matplotlib
        matplotlib.use("Agg")
        ax = p.plot()
        assert "mic" in [t.get_text() for t in ax.get_yticklabels()]
        assert len(p.levels) > 50 and ax.collections  # level envelope + speech bars
        ax.figure.savefig(tmp_path / "timeline.png")
    finally:
        p.close()
