"""Input for the tutorial notebooks: speech and windows, real on the test rig, instructions on a desktop.

This is the rig's side of the tutorials, not part of the ``vdbnb`` package: the notebooks put the repository
root on ``sys.path`` and import it from here. On the rig (``rig/rig-up.sh``: PulseAudio sinks ``mic_feed``
and ``system_out`` exist and ``DISPLAY`` is set) :func:`say` speaks with espeak-ng into the microphone or the system audio (paplay) and
:func:`show_window` opens an xterm with the given title and text (xdotool places it on display 1 or 2).
On a real desktop they do nothing but print what *you* should say or do, then wait a little, so the same
notebook runs unchanged on both::

    from rig.tutorial import say, show_window, close_windows
    say("the budget review moves to Thursday")          # into the microphone
    say("welcome to the weekly sync", to="system")      # out of the speakers
    w = show_window("Billing Console", "INVOICE-4471 overdue", display=2)
    close_windows()
"""
from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path

__all__ = ["on_rig", "say", "show_window", "close_windows", "Window", "wait", "wait_until", "heard",
           "DISPLAY_WIDTH", "tutorial_data_dir"]

SINKS = {"mic": "mic_feed", "system": "system_out"}
DISPLAY_WIDTH = 1920            # the rig's displays are 1920x1080, side by side
_WINDOWS: list["Window"] = []
_RIG: bool | None = None


def on_rig(refresh: bool = False) -> bool:
    """True when the test rig drives input: ``DISPLAY`` is set and the sinks ``mic_feed`` and
    ``system_out`` exist (``pactl list short sinks``)."""
    global _RIG
    if _RIG is None or refresh:
        _RIG = False
        if os.environ.get("DISPLAY") and shutil.which("pactl"):
            try:
                out = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True,
                                     timeout=5).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            names = {line.split("\t")[1] for line in out.splitlines() if "\t" in line}
            _RIG = set(SINKS.values()) <= names
    return _RIG


def tutorial_data_dir(name: str) -> str:
    """This notebook's own data dir: ``$VDBNB_DATA_DIR`` when set (the tests set it), else a new temporary
    folder that is removed when the kernel exits (after its embedded server is stopped). Sets VDBNB_DATA_DIR,
    so ``vdbnb.connect()`` uses it."""
    if os.environ.get("VDBNB_DATA_DIR"):
        return os.environ["VDBNB_DATA_DIR"]
    d = tempfile.mkdtemp(prefix=f"vdbnb-{name}-")
    os.environ["VDBNB_DATA_DIR"] = d

    def remove() -> None:
        from vdbnb.api.embedded import stop_server
        stop_server(Path(d))
        shutil.rmtree(d, ignore_errors=True)

    atexit.register(remove)
    return d


def _human_wait(seconds: float) -> None:
    time.sleep(max(0.0, seconds))


def wait(seconds: float, why: str = "") -> None:
    """Sleep (so live results can arrive); prints why."""
    if why:
        print(f"… {why} ({seconds:g} s)")
    time.sleep(seconds)


def wait_until(condition, timeout: float = 60.0, why: str = "", every: float = 0.25) -> bool:
    """Wait until ``condition()`` is true (live results arrive when they arrive: a busy machine is slower), at
    most ``timeout`` seconds; prints why, and says so if it gave up. Returns whether it came true."""
    if why:
        print(f"… {why} (up to {timeout:g} s)")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(every)
    ok = bool(condition())
    if not ok:
        print(f"… still waiting after {timeout:g} s{': ' + why if why else ''}; going on")
    return ok


def heard(spoken: str | list[str], transcript: str, share: float = 0.7) -> bool:
    """True when at least ``share`` of the words ``spoken`` are in ``transcript`` (speech recognition may slip
    on a word or two)."""
    import re
    said = {w for s in ([spoken] if isinstance(spoken, str) else spoken) for w in re.findall(r"[a-z0-9]+", s.lower())}
    got = set(re.findall(r"[a-z0-9]+", transcript.lower()))
    return bool(said) and len(said & got) >= share * len(said)


def say(text: str, to: str = "mic", speed: int = 150, voice: str = "en-us", block: bool = True) -> float:
    """Speak ``text`` into the microphone (``to="mic"``) or out of the speakers (``to="system"``).

    On the rig: espeak-ng renders it and paplay plays it into ``mic_feed`` / ``system_out``; returns when it
    has been played (``block=False`` returns at once). On a desktop: prints the sentence for you to say (or
    to play from any app) and waits about as long as saying it takes. Returns the epoch time it started."""
    if to not in SINKS:
        raise ValueError(f"to must be one of {sorted(SINKS)}, not {to!r}")
    if not on_rig():
        where = "into your microphone" if to == "mic" else "through your speakers (a video, a call, or a TTS app)"
        print(f"🗣  Please say {where}:\n      “{text}”")
        t0 = time.time()
        _human_wait(2.0 + 0.45 * len(text.split()))
        return t0
    tmp = Path(tempfile.mkdtemp(prefix="vdbnb-say-"))
    wav = tmp / "say.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True,
                   capture_output=True)
    with wave.open(str(wav)) as w:
        dur = w.getnframes() / w.getframerate()
    t0 = time.time()
    p = subprocess.Popen(["paplay", f"--device={SINKS[to]}", str(wav)])
    print(f"🔊 ({'mic' if to == 'mic' else 'system audio'}, {dur:.1f} s) “{text}”")
    def finish() -> None:
        try:
            p.wait(dur + 20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)

    if block:
        finish()
    else:
        threading.Thread(target=finish, daemon=True, name="say-cleanup").start()
    return t0


class Window:
    """A window opened by :func:`show_window` (an xterm on the rig; a request to you on a desktop)."""

    def __init__(self, title: str, lines: list[str], display: int = 1, x: int = 200, y: int = 200,
                 cols: int = 70, rows: int = 8, bg: str = "black", fg: str = "white", font_size: int = 14):
        self.title, self.lines, self.display = title, lines, display
        self.proc: subprocess.Popen | None = None
        self.wid: str | None = None
        self.geometry: tuple[int, int, int, int] | None = None   # x, y, w, h in global X coordinates
        if not on_rig():
            where = f"on display {display}" if display != 1 else "on your main display"
            print(f"🪟 Please open a window titled “{title}” {where}, showing:")
            for ln in lines:
                print(f"      {ln}")
            _human_wait(6.0)
            return
        script = "; ".join(f"echo {shlex.quote(ln)}" for ln in lines) + "; exec sleep 3600"
        gx = x + (display - 1) * DISPLAY_WIDTH
        self.proc = subprocess.Popen(
            ["xterm", "-T", title, "-bg", bg, "-fg", fg, "-fa", "DejaVu Sans Mono", "-fs", str(font_size),
             "-geometry", f"{cols}x{rows}+{gx}+{y}", "-e", "bash", "-c", script],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline and not self.wid:
            r = subprocess.run(["xdotool", "search", "--name", f"^{title}$"], capture_output=True, text=True)
            self.wid = r.stdout.split()[0] if r.stdout.strip() else None
            time.sleep(0.1)
        if not self.wid:
            self.close()
            raise RuntimeError(f"the window {title!r} did not appear on {os.environ.get('DISPLAY')}")
        subprocess.run(["xdotool", "windowmove", "--sync", self.wid, str(gx), str(y)], capture_output=True,
                       timeout=5)
        subprocess.run(["xdotool", "windowactivate", "--sync", self.wid], capture_output=True, timeout=5)
        time.sleep(0.3)  # let the text render
        self.geometry = self._geometry()
        print(f"🪟 opened “{title}” on display {display}")

    def _geometry(self) -> tuple[int, int, int, int] | None:
        r = subprocess.run(["xdotool", "getwindowgeometry", "--shell", self.wid], capture_output=True, text=True)
        kv = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
        try:
            return int(kv["X"]), int(kv["Y"]), int(kv["WIDTH"]), int(kv["HEIGHT"])
        except (KeyError, ValueError):
            return None

    def activate(self) -> None:
        if self.wid:
            subprocess.run(["xdotool", "windowactivate", "--sync", self.wid], capture_output=True, timeout=5)

    def move(self, display: int, x: int = 200, y: int = 200) -> None:
        """Move the window to another display."""
        self.display = display
        if not self.wid:
            print(f"🪟 Please move “{self.title}” to display {display}.")
            _human_wait(4.0)
            return
        gx = x + (display - 1) * DISPLAY_WIDTH
        subprocess.run(["xdotool", "windowmove", "--sync", self.wid, str(gx), str(y)], capture_output=True,
                       timeout=5)
        self.geometry = self._geometry()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        elif self.proc is None and not on_rig():
            print(f"🪟 You can close “{self.title}” now.")
        if self in _WINDOWS:
            _WINDOWS.remove(self)

    def __repr__(self) -> str:
        return f"Window(title={self.title!r}, display={self.display}, wid={self.wid})"


def show_window(title: str, text: str | list[str], display: int = 1, **kw) -> Window:
    """Open a window titled ``title`` showing ``text`` (a string with newlines, or lines) on display 1 or 2."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    w = Window(title, lines, display=display, **kw)
    _WINDOWS.append(w)
    return w


def close_windows() -> None:
    """Close every window opened by :func:`show_window`."""
    for w in list(_WINDOWS):
        w.close()


atexit.register(close_windows)   # a kernel that shuts down (or a failed run) leaves no windows behind
