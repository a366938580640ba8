"""The sound server (PulseAudio, or PipeWire's pulse server) through libpulse (``pulsectl``): its sources, its
defaults, and a watcher of source removals. No pactl output is parsed, so any server version works
(``pactl -f json`` needs pulseaudio-utils >= 16; Ubuntu 22.04 ships 15.99)."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable, Iterator


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


@contextlib.contextmanager
def connection(name: str = "vdbnb") -> Iterator["object"]:
    """A libpulse client connected to the server ``PULSE_SERVER`` names (or the user's default), never
    spawning one; SoundServerError (with what to do) when there is none."""
    try:
        import pulsectl
    except (ImportError, OSError) as e:  # OSError: libpulse.so.0 missing
        raise SoundServerError(f"cannot load libpulse ({e}): install libpulse0 (it comes with PulseAudio and "
                               "PipeWire-pulse) to capture audio") from None
    client = pulsectl.Pulse(name, connect=False)
    try:
        try:
            # no `timeout=`: pulsectl's timed connect leaves its loop unable to deliver events (seen with
            # 24.12); an absent server fails at once either way
            client.connect(autospawn=False)
        except pulsectl.PulseError as e:
            raise SoundServerError(f"cannot reach the sound server ({e}): is PulseAudio/PipeWire running, and "
                                   "PULSE_SERVER set if it is not the user's default?") from None
        yield client
    finally:
        client.close()


def sources() -> list[Source]:
    """The sound server's sources (inputs and monitors of sinks)."""
    with connection() as c:
        return [Source(s.name, s.description or s.name, s.monitor_of_sink_name or None, _text(s.state))
                for s in c.source_list()]


def _text(value) -> str:
    """pulsectl's enum values compare equal to their names; this is the name itself."""
    return str(getattr(value, "_value", value))


def defaults() -> tuple[str | None, str | None]:
    """(default source, default sink)."""
    with connection() as c:
        info = c.server_info()
        return info.default_source_name or None, info.default_sink_name or None


def has_source(name: str) -> bool:
    """Whether the sound server still has source ``name`` (False when the server itself is gone)."""
    try:
        return any(s.name == name for s in sources())
    except SoundServerError:
        return False


class SourceWatcher:
    """Sound-server events on a thread: when a source is removed (or the server changes or goes away),
    ``on_change()`` is called. PulseAudio moves a stream whose source vanished to another source
    (module-rescue-streams): without this, a vanished device would silently be replaced by the default one."""

    POLL_S = 0.5   # how often the listening thread looks at its stop flag

    def __init__(self, on_change: Callable[[], None]):
        self.on_change = on_change
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self.thread is not None:
            return
        self._stop.clear()
        self.thread = threading.Thread(target=self._run, name="pulse-events", daemon=True)
        self.thread.start()

    @staticmethod
    def is_removal(facility, kind) -> bool:
        """A source removed, or anything on the server itself (it restarted or changed defaults)."""
        facility, kind = _text(facility), _text(kind)
        return (facility == "source" and kind == "remove") or facility == "server"

    def _run(self) -> None:
        import pulsectl
        try:
            with connection("vdbnb-watch") as c:
                c.event_mask_set("source", "server")
                changed: list[bool] = []

                def on_event(ev) -> None:   # libpulse's thread: no pulse calls here (pulsectl's rule)
                    if self.is_removal(ev.facility, ev.t):
                        changed.append(True)
                        raise pulsectl.PulseLoopStop

                c.event_callback_set(on_event)
                while not self._stop.is_set():
                    c.event_listen(timeout=self.POLL_S)
                    if changed:
                        changed.clear()
                        self.on_change()
        except (SoundServerError, pulsectl.PulseDisconnected):
            if not self._stop.is_set():
                self.on_change()    # the server went away: every source with it

    def stop(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=self.POLL_S * 4)
        self.thread = None
