"""The browser as the recorder, for real: JupyterLab in Debian Chromium, headed on the rig's X display; the
browser's own picker approves "Screen 1" (--auto-select-desktop-capture-source) and the page may use the
microphone, which is the rig's PulseAudio source. The kernel runs no recorder: the page captures, encodes
(WebCodecs) and uploads over the ingest protocol, through the Jupyter server or directly.

    RIG_DISPLAY=:95 pytest tests/browser/test_browser_capture.py      (artifacts: tests/browser/artifacts/)
"""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import time
import wave
from contextlib import contextmanager
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from testkit.lab import (ARTIFACTS, Lab, capture_browser, have_browser_stack, open_notebook, run_all,
                         run_cell, write_notebook)
from testkit.procs import processes_with_env
from testkit.speech import espeak_wav, words
from testkit.wait import wait_for_value
from vdbnb.media.decode import decode_audio, iter_video_frames, load_fragments

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.rig]

# said into the microphone, one per run (outside checks use others): everyday sentences of 9-14 words
SENTENCES = [
    "the quarterly budget review moves to thursday afternoon in the large meeting room",
    "please send the signed contract to the legal team before friday evening",
    "our new office opens next month near the central train station",
    "remember to water the plants and lock the back door tonight",
    "the delivery truck will arrive between nine and eleven tomorrow morning",
    "she booked a table for six people at the italian restaurant downtown",
    "the printer on the second floor is out of paper again",
    "we should rehearse the product demo twice before the customer call",
]
# where the test puts things on screen 1 (the browser window covers x < 1400, y < ~1040)
WINDOW_AT = (1440, 60)                 # the coloured xterm's top-left corner
FLASH_PATCH = (slice(720, 1000), slice(1500, 1880))   # rows, cols of bare root window: flashes for A/V
MASK = {"x": 1500, "y": 400, "w": 380, "h": 200}       # bare root too, blacked out by the page before encoding


def rig_env() -> dict:
    return {k: os.environ[k] for k in ("DISPLAY", "PULSE_SERVER", "XDG_RUNTIME_DIR", "ALSA_CONFIG_PATH")
            if k in os.environ}


def tone_wav(path: Path, seconds: float = 0.3, freq: float = 1000.0) -> Path:
    rate = 48000
    x = (0.6 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def play(wav: Path) -> subprocess.Popen:
    return subprocess.Popen(["paplay", "--device=mic_feed", str(wav)])


def random_colour(rng: random.Random) -> tuple[int, int, int]:
    """A saturated colour, far from black, white, grey and the page's own colours."""
    while True:
        c = [rng.randint(0, 255) for _ in range(3)]
        if max(c) - min(c) >= 140 and max(c) >= 170:
            return tuple(c)


def hexc(c) -> str:
    return "#%02x%02x%02x" % tuple(c)


def near(img: np.ndarray, c, tol: int = 40) -> np.ndarray:
    return (np.abs(img.astype(int) - np.array(c)[None, None, :]) <= tol).all(axis=2)



def recorder_state(page) -> str | None:
    return page.evaluate("() => { const r = document.querySelector('.vdbnb-panel'); "
                         "return r && r.dataset.recorder || null; }")


def link(page) -> dict:
    return page.evaluate("""() => { const e = document.querySelector('.vdbnb-link');
        return e ? {text: e.textContent, connected: e.dataset.connected, unacked: +(e.dataset.unacked || 0)} : {}; }""")


def server_fragments(data_dir: Path, sid: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for d in sorted((data_dir / "media" / sid).iterdir()):
        frags = load_fragments([d])
        if frags:
            out[frags[0].channel_id] = frags
    return out


def recorder_processes(lab) -> list[str]:
    """Command lines of recorder processes among everything this lab started (its marker variable: kernels
    and their children, wherever they were reparented to)."""
    return [cmd for _pid, cmd in processes_with_env("VDBNB_TEST_LAB", lab.tag)
            if "vdbnb.recorder" in cmd or "vdbnb-recorder" in cmd or ("vdbnb" in cmd and " record" in cmd)]


def transcript_has(cap, sentence: str, server, timeout: float = 240) -> list[str]:
    """Wait until the session's final transcripts hold >= 80 % of the sentence's words; returns them."""
    heard: list[str] = []

    def said():
        evs = [e for e in cap.events("transcript") if (e.data or {}).get("is_final", e.is_final)]
        heard[:] = [e.text or "" for e in evs]
        got = set(words(" ".join(heard)))
        return sum(w in got for w in words(sentence)) / len(words(sentence)) >= 0.8
    try:
        wait_for_value(said, f"a transcript with {sentence!r}", timeout)
    except AssertionError as e:
        pipes = httpx.get(f"{server.url}/health").json()["data"]["pipelines"]
        raise AssertionError(f"{e}; heard {heard}; pipelines {pipes}") from None
    return heard


@contextmanager
def lab_with_panel(tmp_path, server, cell: str, console: list):
    missing = have_browser_stack()
    if missing:
        pytest.skip(missing)
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root / "capture.ipynb", [cell])
    env = rig_env()
    lab = Lab(root, env={**env, "VDBNB_URL": server.url, "VDBNB_API_KEY": server.api_key}).start()
    try:
        with capture_browser(env, console=console) as (_b, page):
            open_notebook(page, lab, "capture.ipynb", timeout=120)
            run_all(page)
            page.wait_for_selector(".vdbnb-panel .vdbnb-share", timeout=120_000)
            yield lab, page
    finally:
        left = lab.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{tmp_path.name}-console.txt").write_text("\n".join(console))
    assert not left, f"processes of the lab still alive after it stopped: {left}"


def start_recording(page, server, timeout: float = 60) -> str:
    page.click(".vdbnb-panel .vdbnb-start")
    wait_for_value(lambda: recorder_state(page) == "recording", "the page records", timeout)
    out = run_cell(page, "print(panel.session.id)", timeout_ms=30000)
    sid = (out.get("text") or "").strip()
    assert sid.startswith("cap-"), out
    wait_for_value(lambda: httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=server.headers())
             .json()["data"]["status"] == "active", "the session is active", 30)
    return sid


def stop_recording(page, server, sid: str, timeout: float = 120) -> dict:
    page.click(".vdbnb-panel .vdbnb-stop")
    wait_for_value(lambda: recorder_state(page) == "stopped", "the page stopped", timeout)
    return wait_for_value(lambda: (lambda d: d if d["status"] == "stopped" else None)(
        httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=server.headers()).json()["data"]),
        "the session is stopped", 30)


@pytest.mark.timeout(900)
def test_browser_records_screen_and_mic_through_the_jupyter_server(rig, server, tmp_path):
    seed = int(time.time())
    rng = random.Random(seed)
    sentence = rng.choice(SENTENCES)
    window_c, flash_c = random_colour(rng), random_colour(rng)
    fps = 4.0
    print(f"seed {seed}: sentence {sentence!r}, window {hexc(window_c)}, flash {hexc(flash_c)}")
    speech = Path(espeak_wav(sentence, tmp_path / "speech.wav", speed=150))
    beep = tone_wav(tmp_path / "beep.wav")
    subprocess.run(["xsetroot", "-solid", "black"], check=True)
    console: list[str] = []
    cell = ("from vdbnb.widgets import CapturePanel, BrowserSource\n"
            f"panel = CapturePanel(source=BrowserSource(reach='proxy', fps={fps}, privacy={{'exclude_rects': [{MASK}]}}))"
            "   # as for a remote kernel\n"
            "panel")
    term = None
    with lab_with_panel(tmp_path, server, cell, console) as (lab, page):
        page.screenshot(path=str(ARTIFACTS / "browser-capture-before.png"))
        sid = start_recording(page, server)
        assert "via Jupyter" in link(page)["text"], link(page)
        time.sleep(1.0)
        term = subprocess.Popen(["xterm", "-T", "Known colour", "-bg", hexc(window_c), "-fg", hexc(window_c),
                                 "-geometry", f"40x16+{WINDOW_AT[0]}+{WINDOW_AT[1]}", "-e", "sleep", "600"])
        time.sleep(2.0)
        # A/V: the bare root window flashes as a beep goes into the microphone, at the same instant
        t_flash = time.time()
        subprocess.run(["xsetroot", "-solid", hexc(flash_c)], check=True)
        play(beep).wait(10)
        time.sleep(1.5)
        subprocess.run(["xsetroot", "-solid", "black"], check=True)
        time.sleep(0.5)
        play(speech).wait(30)
        time.sleep(1.5)
        page.screenshot(path=str(ARTIFACTS / "browser-capture-recording.png"))
        # no native recorder anywhere under the Jupyter server (the kernel's children included)
        assert recorder_processes(lab) == []
        done = stop_recording(page, server, sid)
        assert link(page)["unacked"] == 0
        state = run_cell(page, "print(panel.state, panel.session.id, panel.session.refresh().status)")["text"]
        assert state.split() == ["stopped", sid, "stopped"], state
        # what the page reported at its stop: all acked, and the display's clock measured exactly
        summary = json.loads(run_cell(page, "import json; print(json.dumps(panel.source.summary))")["text"])
        print("page summary:", summary)
        assert summary["unacked"] == 0 and summary["acked"] == summary["fragments"] > 0, summary
        assert summary["video"]["display:1"]["calibrated"] is True, summary
    term.terminate()
    subprocess.run(["xsetroot", "-solid", "black"])
    assert not [line for line in console if "pageerror" in line], console

    # every fragment stored, numbered from 0 without a gap; the screen as H.264 High from WebCodecs
    frags = server_fragments(server.data_dir, sid)
    assert set(frags) == {"display:1", "mic:default"}, set(frags)
    for cid, fr in frags.items():
        assert [f.seq for f in fr] == list(range(len(fr))), cid
    assert {f.codec for f in frags["display:1"]} == {"h264"}
    assert frags["display:1"][0].payload[4:6] == b"\x67\x64"  # SPS, profile_idc 100 = High
    assert done["started_at"] and done["stopped_at"]

    # A/V: the first frame showing the flash vs the beep's onset in the microphone, on the one clock
    vf = [(pts, img[FLASH_PATCH].reshape(-1, 3).mean(axis=0)) for pts, img in iter_video_frames(frags["display:1"])]
    lit = [(pts, c) for pts, c in vf if pts > t_flash - 1 and np.abs(c - flash_c).max() < 40]
    assert lit, f"no frame shows the flash: {[(round(p - t_flash, 2), c.round()) for p, c in vf][-20:]}"
    f1 = lit[0][0]
    # the masked rectangle was flash-coloured on screen too, but never left the page as anything but black
    masked = [img[MASK["y"]:MASK["y"] + MASK["h"], MASK["x"]:MASK["x"] + MASK["w"]].reshape(-1, 3).mean(axis=0)
              for pts, img in iter_video_frames(frags["display:1"]) if lit[0][0] <= pts <= lit[-1][0]]
    assert masked and max(m.max() for m in masked) < 24, f"the masked region is not black: {masked[:3]}"
    pcm, t_audio = decode_audio(frags["mic:default"])
    seg0 = int((t_flash - 1 - t_audio) * 16000)
    env = np.sqrt(np.convolve(pcm[seg0:seg0 + 16000 * 3] ** 2, np.ones(80) / 80, mode="same"))
    k = int(np.argmax(env > 0.1))
    assert env[k] > 0.1, "the beep is not in the microphone's audio"
    t_beep = t_audio + (seg0 + k) / 16000
    interval = 1 / fps
    print(f"flash shown from {f1 - t_flash:+.3f} s, beep at {t_beep - t_flash:+.3f} s (after the command); "
          f"A/V offset {t_beep - (f1 - interval / 2):+.3f} s, frame interval {interval:.3f} s")
    around = [(round(p - t_flash, 3), c.round().tolist()) for p, c in vf if abs(p - t_flash) < 2]
    assert f1 - interval - 0.05 <= t_beep <= f1 + 0.05, f"A/V offset beyond one frame interval: {around}"

    # the export shows the window, and has the audio
    import vdbnb
    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.get_capture_session(sid)
    ex = cap.export(wait=True, timeout=300)
    assert ex["export_status"] == "exported", ex
    mp4 = httpx.get(ex["stream_url"], timeout=60, follow_redirects=True).content
    (ARTIFACTS / "browser-capture.mp4").write_bytes(mp4)
    x, y = WINDOW_AT
    with av.open(io.BytesIO(mp4)) as c:
        assert c.streams.audio and c.streams.video
        shown = [near(f.to_ndarray(format="rgb24")[y + 40:y + 200, x + 20:x + 200], window_c).mean()
                 for f in c.decode(video=0)]
    assert max(shown) > 0.8, f"the window's colour is not in the export (best {max(shown):.2f})"

    # the transcript has the sentence (live tiny.en, then the accurate pass after stop)
    print("transcript:", transcript_has(cap, sentence, server))


@pytest.mark.timeout(900)
def test_the_browsers_link_cut_for_30_s_loses_nothing(rig, server, tmp_path):
    """The page reaches the server directly, through a TCP proxy this test cuts for 30 s mid-capture (acks
    lost first for 2 s, then nothing passes). The page keeps recording into IndexedDB, reconnects, resends;
    the server stores every fragment once, numbered without a gap, and what was said during the cut is
    transcribed."""
    from tests.reliability.proxy import TcpProxy
    rng = random.Random(int(time.time()))
    sentence = rng.choice(SENTENCES)
    speech = Path(espeak_wav(sentence, tmp_path / "speech.wav", speed=150))
    proxy = TcpProxy(server.port).start()
    console: list[str] = []
    cell = ("from vdbnb.widgets import CapturePanel, BrowserSource\n"
            f"panel = CapturePanel(source=BrowserSource(browser_url='{proxy.url}', reach='direct', fps=2))\n"
            "panel")
    clock = None
    try:
        with lab_with_panel(tmp_path, server, cell, console) as (lab, page):
            sid = start_recording(page, server)
            assert "direct" in link(page)["text"], link(page)
            # the screen changes all the time: a clock
            clock = subprocess.Popen(["xterm", "-T", "clock", "-geometry", f"30x6+{WINDOW_AT[0]}+{WINDOW_AT[1]}",
                                      "-e", "bash", "-c", "while true; do date +%T.%N; sleep 0.3; done"])
            time.sleep(6)
            t_cut = time.time()
            proxy.cut(acks_first=2.0)
            wait_for_value(lambda: link(page).get("connected") == "false", "the page sees its link down", 30)
            time.sleep(5)
            play(speech).wait(30)                 # said while nothing reaches the server
            waiting = link(page)["unacked"]
            while time.time() < t_cut + 30:
                time.sleep(0.5)
            page.screenshot(path=str(ARTIFACTS / "browser-capture-cut.png"))
            proxy.restore()
            t_back = time.time()
            assert waiting > 20, f"only {waiting} fragments waited in IndexedDB during the cut"
            wait_for_value(lambda: link(page).get("connected") == "true" and link(page)["unacked"] == 0,
                           "everything kept in the browser is acknowledged", 120)
            time.sleep(4)
            stop_recording(page, server, sid)
            summary = json.loads(run_cell(page, "import json; print(json.dumps(panel.source.summary))")["text"])
            print("page summary:", summary)
            assert recorder_processes(lab) == []
    finally:
        if clock is not None:
            clock.terminate()
        proxy.close()
    assert summary["unacked"] == 0 and summary["reconnects"] >= 1, summary
    frags = server_fragments(server.data_dir, sid)
    assert set(frags) == {"display:1", "mic:default"}
    for cid, fr in frags.items():
        assert [f.seq for f in fr] == list(range(len(fr))), f"{cid}: a seq is missing"
    # audio: one unbroken timeline across the cut
    mic = frags["mic:default"]
    holes = [(round(a.t1 - t_cut, 2), round(b.t0 - a.t1, 3)) for a, b in zip(mic, mic[1:]) if b.t0 - a.t1 > 0.07]
    assert not holes, f"audio missing (s after the cut, length): {holes}"
    assert mic[0].t0 < t_cut - 3 and mic[-1].t1 > t_back + 3
    # video: the screen during the cut was stored too (the clock changed every 0.3 s)
    during = [f for f in frags["display:1"] if t_cut + 1 < f.t0 < t_back - 1]
    assert len(during) >= 10, f"{len(during)} video fragments from the 30 s of the cut"
    # every fragment was stored once (duplicates of resent ones were acked, not stored again)
    assert sum(len(fr) for fr in frags.values()) == summary["fragments"], summary
    import vdbnb
    cap = vdbnb.connect(api_key=server.api_key, base_url=server.url).get_capture_session(sid)
    transcript_has(cap, sentence, server)
