"""Screen activity for the recorder benches, driven on the rig's display 1 with real windows and real keys.

``work``: someone types steadily into a terminal (about 4 characters a second, a new line every ~10 s) while a
page in a second terminal (`less` on a long text) is scrolled by a few lines every 4 s and by a whole page
every 20 s. ``typing``: a line typed every 3 s. ``top``: `top` refreshing every second. ``static``: nothing moves.
"""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES = ("work", "typing", "top", "static")

# xterm ignores synthetic (XSendEvent) keys unless told otherwise; with it each window gets its own keys
# without stealing focus from the other
XTERM = ["xterm", "-xrm", "XTerm*allowSendEvents: true", "-fa", "DejaVu Sans Mono", "-fs", "11"]

TYPED = ("git status", "vim notes.md", "the quarterly numbers look fine but the migration is late",
         "grep -rn 'TODO' src/ | wc -l", "python -m pytest tests/ -x -q", "ssh build@ci-runner-3",
         "make release VERSION=2.4.1", "tail -f /var/log/syslog", "docker compose up -d db",
         "curl -s localhost:8080/health | jq .")


def _wid(title: str, stop: threading.Event) -> str | None:
    for _ in range(50):
        r = subprocess.run(["xdotool", "search", "--name", f"^{title}$"], capture_output=True, text=True)
        if r.stdout.split():
            return r.stdout.split()[0]
        if stop.wait(0.2):
            return None
    return None


def _key(wid: str, *keys: str) -> None:
    subprocess.run(["xdotool", "key", "--window", wid, *keys], stderr=subprocess.DEVNULL)


def _type(wid: str, text: str, delay_ms: int = 250) -> None:
    subprocess.run(["xdotool", "type", "--window", wid, "--delay", str(delay_ms), text],
                   stderr=subprocess.DEVNULL)


class Scene:
    """Opens the scene's windows and drives them on threads until :meth:`stop`."""

    def __init__(self, name: str):
        if name not in SCENES:
            raise ValueError(f"unknown scene {name!r}; one of {SCENES}")
        self.name = name
        self.procs: list[subprocess.Popen] = []
        self.halt = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> "Scene":
        if self.name == "static":
            self.procs.append(subprocess.Popen([*XTERM, "-T", "bench static", "-geometry", "120x40+100+100", "-e",
                                                "bash", "-c", f"cat {ROOT / 'README.md'}; cat"],
                                               stderr=subprocess.DEVNULL))
        elif self.name == "top":
            self.procs.append(subprocess.Popen([*XTERM, "-T", "bench top", "-geometry", "120x40+100+100", "-e",
                                                "top", "-d", "1"], stderr=subprocess.DEVNULL))
        elif self.name == "typing":
            self.procs.append(subprocess.Popen([*XTERM, "-T", "bench typing", "-geometry", "120x40+100+100",
                                                "-e", "bash", "-c", f"cat {ROOT / 'README.md'}; cat"],
                                               stderr=subprocess.DEVNULL))
            self._thread(self._typing_lines)
        else:
            self.procs.append(subprocess.Popen([*XTERM, "-T", "bench shell", "-geometry", "100x45+20+40", "-e",
                                                "bash", "--norc", "-i"], stderr=subprocess.DEVNULL))
            pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
            self.procs.append(subprocess.Popen([*XTERM, "-T", "bench page", "-geometry", "110x50+930+40", "-e",
                                                "less", *map(str, pages)], stderr=subprocess.DEVNULL))
            self._thread(self._typing_steady)
            self._thread(self._scrolling)
        return self

    def _thread(self, fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self.threads.append(t)

    def _typing_lines(self):
        wid = _wid("bench typing", self.halt)
        i = 0
        while wid and not self.halt.wait(3):
            _type(wid, f"line {i}: the quick brown fox\n", 12)
            i += 1

    def _typing_steady(self):
        wid = _wid("bench shell", self.halt)
        i = 0
        while wid and not self.halt.is_set():
            # typed, not executed: Ctrl-C clears the line, so the shell's output stays the typing itself
            _type(wid, TYPED[i % len(TYPED)])
            _key(wid, "ctrl+c")
            i += 1
            self.halt.wait(1.5)

    def _scrolling(self):
        wid = _wid("bench page", self.halt)
        n = 0
        while wid and not self.halt.wait(4):
            n += 1
            _key(wid, *(["Next"] if n % 5 == 0 else ["Down"] * 3))

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(15)
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
