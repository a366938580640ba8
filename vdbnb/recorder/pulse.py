"""The sound server (PulseAudio, or PipeWire's pulse server) through ``pactl -f json``: its sources, its defaults,
and a watcher of source removals (``pactl subscribe``). Machine-readable output only: nothing here parses
pactl's human, translated text. Needs pactl >= 16 (the JSON format)."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from vdbnb.config import child_env


class SoundServerError(RuntimeError):
    """No usable sound server; ``code`` is ``NO_SOUND_SERVER``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = "NO_SOUND_SERVER"
        self.message = message


@dataclass
class Source:
    name: str
    description: str
    monitor_of: str | None    # the sink this source monitors (system audio), None for an input
    state: str = ""


def pactl_json(*args: str, timeout: float = 5) -> Any:
    """``pactl -f json ARGS`` parsed; SoundServerError (with what to do) when pactl is missing, too old or the
    server is unreachable."""
    exe = shutil.which("pactl")
    if not exe:
        raise SoundServerError("pactl not found: install pulseaudio-utils (PulseAudio or PipeWire-pulse) to "
                               "capture audio")
    r = subprocess.run([exe, "-f", "json", *args], capture_output=True, text=True, timeout=timeout,
                       env=child_env({"LC_ALL": "C"}))
    if r.returncode != 0:
        why = r.stderr.strip() or r.stdout.strip()
        if "json" in why.lower() or "unrecognized option" in why or "invalid option" in why:
            raise SoundServerError(f"pactl is too old for JSON output ({why}): vdbnb needs pactl >= 16 "
                                   "(pulseaudio-utils 16)")
        raise SoundServerError(f"pactl {' '.join(args)} failed: {why} (is PulseAudio/PipeWire running and "
                               "PULSE_SERVER set?)")
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        raise SoundServerError(f"pactl -f json {' '.join(args)} printed no JSON ({e}): vdbnb needs pactl >= 16"
                               ) from None


def sources() -> list[Source]:
    """The sound server's sources (inputs and monitors of sinks)."""
    out = []
    for s in pactl_json("list", "sources"):
        # pactl's JSON names the monitored sink "monitor_source" ("" for an input)
        out.append(Source(s["name"], s.get("description") or s["name"], s.get("monitor_source") or None,
                          str(s.get("state") or "")))
    return out


def defaults() -> tuple[str | None, str | None]:
    """(default source, default sink)."""
    info = pactl_json("info")
    return info.get("default_source_name") or None, info.get("default_sink_name") or None


def iter_json_objects(stream) -> Iterator[Any]:
    """JSON values from a binary stream as they arrive: ``pactl -f json subscribe`` writes its events back to
    back, with no separator."""
    dec = json.JSONDecoder()
    buf = ""
    while True:
        chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
        if not chunk:
            return
        buf += chunk.decode("utf-8", errors="replace")
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                value, end = dec.raw_decode(buf)
            except ValueError:
                if len(buf) > 1 << 20:  # not JSON after all: drop it rather than grow without bound
                    buf = ""
                break  # incomplete: wait for more
            yield value
            buf = buf[end:]


def has_source(name: str) -> bool:
    """Whether the sound server still has source ``name`` (False when the server itself is gone)."""
    try:
        return any(s.name == name for s in sources())
    except (SoundServerError, OSError, subprocess.SubprocessError):
        return False


class SourceWatcher:
    """``pactl -f json subscribe`` on a thread: when a source is removed (or the server changes),
    ``on_change()`` is called. PulseAudio moves a stream whose source vanished to another source
    (module-rescue-streams): without this, a vanished device would silently be replaced by the default one."""

    def __init__(self, on_change: Callable[[], None]):
        self.on_change = on_change
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is not None or not shutil.which("pactl"):
            return
        self.proc = subprocess.Popen(["pactl", "-f", "json", "subscribe"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     env=child_env({"LC_ALL": "C"}))
        self.thread = threading.Thread(target=self._run, name="pactl-subscribe", daemon=True)
        self.thread.start()

    @staticmethod
    def is_removal(event: dict) -> bool:
        """A source removed, or anything on the server itself (it restarted or changed defaults)."""
        return (event.get("event") == "remove" and event.get("on") == "source") or event.get("on") == "server"

    def _run(self) -> None:
        for ev in iter_json_objects(self.proc.stdout):
            if isinstance(ev, dict) and self.is_removal(ev):
                self.on_change()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.thread = None
