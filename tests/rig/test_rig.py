"""The repository's rig (rig/): what it gives, and that it stops only what it started."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rig as testrig

pytestmark = pytest.mark.rig

RECORD = r"""
import sys, time, numpy as np, sounddevice as sd
names = [d["name"] for d in sd.query_devices()]
assert "pulse" in names, names
blocks = []
with sd.InputStream(samplerate=48000, channels=1, device="pulse", dtype="float32",
                    callback=lambda x, n, t, s: blocks.append(x[:, 0].copy())):
    print("ready", flush=True)
    sys.stdin.readline()          # the test says when the sound has been played
    time.sleep(0.3)
np.save(sys.argv[1], np.concatenate(blocks))
"""


def _record_while_playing(env: dict, tmp_path: Path, sink: str, source: str | None, text: str) -> float:
    """RMS of what PortAudio (ALSA -> pulse) hears on ``source`` while espeak speech plays into ``sink``."""
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    out = tmp_path / f"{sink}.npy"
    penv = {**os.environ, **env}
    penv.pop("PULSE_SOURCE", None)
    if source:
        penv["PULSE_SOURCE"] = source
    rec = subprocess.Popen([sys.executable, "-c", RECORD, str(out)], env=penv, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert rec.stdout.readline().strip() == "ready"
        subprocess.run(["paplay", f"--device={sink}", str(wav)], env=penv, check=True, timeout=30)
        rec.stdin.write("done\n")
        rec.stdin.flush()
        assert rec.wait(30) == 0
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.wait(5)
    x = np.load(out)
    return float(np.sqrt(np.mean(x ** 2)))


def test_two_screens_a_microphone_and_system_audio(rig, tmp_path):
    import mss
    with (getattr(mss, "MSS", None) or mss.mss)() as m:
        mons = m.monitors
    assert len(mons) == 3, mons                      # [0] the union, [1] DUMMY0, [2] DUMMY1
    assert (mons[0]["width"], mons[0]["height"]) == (3840, 1080)
    assert [(d["left"], d["width"], d["height"]) for d in mons[1:]] == [(0, 1920, 1080), (1920, 1920, 1080)]
    info = subprocess.run(["pactl", "info"], capture_output=True, text=True, check=True).stdout
    assert "Default Sink: system_out" in info and "Default Source: virtual_mic" in info
    # speech into mic_feed comes out of the default source; into system_out, out of its monitor
    mic = _record_while_playing(rig, tmp_path, "mic_feed", None, "testing the virtual microphone")
    sysa = _record_while_playing(rig, tmp_path, "system_out", "system_out.monitor", "testing system audio")
    assert mic > 0.02 and sysa > 0.02, (mic, sysa)


def test_openbox_reports_the_active_window_title(rig):
    title = f"rig-title-{os.getpid()}"
    p = subprocess.Popen(["xterm", "-T", title, "-e", "sleep", "60"])
    try:
        deadline = time.time() + 15
        name = ""
        while time.time() < deadline and name != title:
            w = subprocess.run(["xdotool", "search", "--name", f"^{title}$"], capture_output=True, text=True).stdout
            if w.split():
                subprocess.run(["xdotool", "windowactivate", "--sync", w.split()[0]], capture_output=True, timeout=5)
            name = subprocess.run(["xdotool", "getactivewindow", "getwindowname"], capture_output=True,
                                  text=True).stdout.strip()
            time.sleep(0.1)
        assert name == title
    finally:
        p.terminate()
        p.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


@pytest.mark.timeout(180)
def test_down_stops_only_what_up_started_and_leaves_asoundrc_alone(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for k in ("DISPLAY", "PULSE_SERVER", "RIG_DIR", "RIG_STARTED", "ALSA_CONFIG_PATH"):
        monkeypatch.delenv(k, raising=False)
    display = testrig.free_display()
    first = testrig.up(display)
    try:
        assert set(first.started) == {"xorg", "openbox", "pulse", "keepalive-system_out", "keepalive-mic_feed"}
        rig_dir = Path(first.env["RIG_DIR"])
        pids = {p: int((rig_dir / f"{p}.pid").read_text().split()[0]) for p in first.started}
        assert all(_alive(p) for p in pids.values())
        again = testrig.up(display)               # already up: reused, nothing of its own to stop
        assert again.started == [] and again.env == first.env
        again.down()
        assert all(_alive(p) for p in pids.values()), "a second rig-up's rig-down stopped the first one's rig"
        assert not (home / ".asoundrc").exists(), "the rig wrote the user's ~/.asoundrc"
        assert first.env["ALSA_CONFIG_PATH"].endswith("rig/asound.conf")
    finally:
        first.down()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids.values())
    r = subprocess.run(["xdpyinfo", "-display", display], capture_output=True)
    assert r.returncode != 0, "the X server is still up after rig-down"
    assert not rig_dir.exists(), "rig-down left the folder rig-up made"
