"""What the recorder knows about missing devices reaches the user: in `vdbnb record --list-channels`, in
CaptureClient.list_channels() (``Channels.problems``, shown in its repr), in the error of a start with a channel
that is not there, and in the CapturePanel, each with what to do. Real recorder processes, real environments:
no display, a Wayland session, a display that does not answer, a sound server that is not there."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rig as testrig
from vdbnb.capture import SyncCaptureClient
from vdbnb.errors import CaptureError


def listed(**env: str) -> dict:
    import os
    r = subprocess.run([sys.executable, "-m", "vdbnb", "record", "--list-channels"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def codes(d: dict) -> dict[str, dict]:
    return {p["code"]: p for p in d["problems"]}


def test_on_the_rig_nothing_is_missing(rig):
    d = listed()
    assert d["problems"] == []
    assert {"display:1", "display:2", "mic:default", "system_audio:default"} <= {c["channel_id"] for c in d["channels"]}


def test_each_missing_device_is_named_with_what_to_do(rig):
    no_x = listed(DISPLAY="")
    p = codes(no_x)["NO_DISPLAY"]
    assert p["kind"] == "display" and "DISPLAY is not set" in p["message"] and "rig/rig-up.sh" in p["hint"]
    assert not any(c["type"] == "video" for c in no_x["channels"])
    assert any(c["channel_id"] == "mic:default" for c in no_x["channels"])      # audio is unaffected

    dead = testrig.free_display()
    p = codes(listed(DISPLAY=dead))["NO_DISPLAY"]
    assert f"cannot open display {dead}" in p["message"] and "XAUTHORITY" in p["hint"]

    wl = listed(WAYLAND_DISPLAY="wayland-0", XDG_SESSION_TYPE="wayland")
    p = codes(wl)["WAYLAND"]
    assert "Wayland" in p["message"] and 'CapturePanel(source="browser")' in p["hint"]
    assert not any(c["type"] == "video" for c in wl["channels"])                 # not black frames: none
    forced = listed(WAYLAND_DISPLAY="wayland-0", VDBNB_CAPTURE_XWAYLAND="1")
    assert forced["problems"] == [] and any(c["type"] == "video" for c in forced["channels"])

    no_snd = listed(PULSE_SERVER="unix:/nonexistent/pulse.sock")
    p = codes(no_snd)["NO_SOUND_SERVER"]
    assert p["kind"] == "audio" and "cannot reach the sound server" in p["message"] and "PULSE_SERVER" in p["hint"]
    assert not any(c["type"] == "audio" for c in no_snd["channels"])


@pytest.fixture
def token(server):
    from tests.recorder.rigutil import backend_session
    return backend_session(server)


def test_client_and_start_error_say_why(rig, server, token):
    sid, tok = token
    client = SyncCaptureClient(tok, server.url, env={"DISPLAY": ""})
    try:
        chans = client.list_channels()
        assert len(chans.displays) == 0 and len(chans.mics) >= 1
        assert [p["code"] for p in chans.problems] == ["NO_DISPLAY"]
        assert "NO_DISPLAY" in repr(chans) and "what to do" in repr(chans)
        with pytest.raises(CaptureError) as e:
            client.start_session(sid, ["display:1"])
        msg = str(e.value)
        assert "display:1" in msg and "DISPLAY is not set" in msg and "What to do" in msg, msg
    finally:
        client.shutdown()


def test_panel_shows_the_problems(rig, server, token):
    pytest.importorskip("anywidget")
    import vdbnb
    from vdbnb.widgets import CapturePanel
    from vdbnb.widgets.adapters import RecorderSource
    _, tok = token
    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    client = SyncCaptureClient(tok, server.url, env={"DISPLAY": "", "PULSE_SERVER": "unix:/nonexistent/pulse.sock"})
    panel = CapturePanel(source=RecorderSource(conn, client), events=[], preview=False)
    try:
        errs = {e["code"]: e for e in panel.errors}
        assert {"NO_DISPLAY", "NO_SOUND_SERVER"} <= set(errs), panel.errors
        assert "rig/rig-up.sh" in errs["NO_DISPLAY"]["hint"] and "PULSE_SERVER" in errs["NO_SOUND_SERVER"]["hint"]
        assert not [c for c in panel.channels if c["type"] in ("video", "audio")], panel.channels
    finally:
        panel.close()
        client.shutdown()
