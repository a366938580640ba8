"""Channel discovery: displays from mss, audio sources from the sound server (PulseAudio / PipeWire-pulse).

Channel ids: ``display:<n>`` (mss monitor index, 1-based), ``mic:<source name>``, ``system_audio:<monitor
source name>`` and the stable aliases ``mic:default`` / ``system_audio:default`` (resolved at start to the
default source and the default sink's monitor). Nothing here knows the rig's names.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from vdbnb.recorder import pulse


@dataclass
class ChannelInfo:
    channel_id: str
    type: str                 # audio | video
    name: str
    is_default: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "id": self.channel_id, "type": self.type, "name": self.name,
                "is_default": self.is_default, **self.extra}


# ---------------------------------------------------------------- displays
def list_displays(display: str | None) -> list[ChannelInfo]:
    """The screens mss sees; none without an X display (``display``: ``Settings.display``) on Linux."""
    if not display and os.name == "posix" and not _is_mac():
        return []

    try:
        with open_mss() as m:
            mons = m.monitors
    except Exception:  # no X server / no permission
        return []
    out = []
    for i, mon in enumerate(mons[1:], start=1):
        prim = bool(mon.get("is_primary", i == 1))
        name = mon.get("output") or mon.get("name") or f"Display {i}"
        out.append(ChannelInfo(f"display:{i}", "video", f"Display {i} ({name})", is_default=prim, extra={
            "is_primary": prim, "x": mon["left"], "y": mon["top"], "width": mon["width"],
            "height": mon["height"], "output": mon.get("output")}))
    if out and not any(c.is_default for c in out):
        out[0].is_default = True
        out[0].extra["is_primary"] = True
    return out


def open_mss():
    import mss

    cls = getattr(mss, "MSS", None) or mss.mss
    return cls()


def _is_mac() -> bool:
    import sys

    return sys.platform == "darwin"


# ---------------------------------------------------------------- audio (the sound server)
def list_audio() -> list[ChannelInfo]:
    """Microphones (inputs) and system audio (monitors of sinks), with the stable aliases ``mic:default`` and
    ``system_audio:default`` first; raises pulse.SoundServerError without a sound server."""
    srcs = pulse.sources()
    dsrc, dsink = pulse.defaults()
    dmon = next((s.name for s in srcs if s.monitor_of and s.monitor_of == dsink), None)
    mics, sysa = [], []
    for s in srcs:
        name, desc = s.name, s.description
        if s.monitor_of:
            sysa.append(ChannelInfo(f"system_audio:{name}", "audio", desc, is_default=name == dmon,
                                    extra={"source": name, "monitor_of": s.monitor_of}))
        else:
            mics.append(ChannelInfo(f"mic:{name}", "audio", desc, is_default=name == dsrc,
                                    extra={"source": name}))
    out: list[ChannelInfo] = []
    if dsrc and any(c.extra["source"] == dsrc for c in mics):
        out.append(ChannelInfo("mic:default", "audio", f"Default microphone ({dsrc})", is_default=True,
                               extra={"source": dsrc, "alias": True}))
    out += sorted(mics, key=lambda c: not c.is_default)
    if dmon:
        out.append(ChannelInfo("system_audio:default", "audio", f"System audio ({dsink})", is_default=True,
                               extra={"source": dmon, "monitor_of": dsink, "alias": True}))
    out += sorted(sysa, key=lambda c: not c.is_default)
    return out


def list_channels(display: str | None) -> tuple[list[ChannelInfo], list[dict[str, str]]]:
    """All channels, plus a list of problems (e.g. no sound server) as {code, message}. ``display``: the X
    display (``Settings.display``)."""
    problems = []
    chans = list_displays(display)
    if not chans:
        problems.append({"code": "NO_DISPLAY", "message": "no X display found (DISPLAY unset or not reachable): "
                                                         "screens cannot be captured"})
    try:
        chans += list_audio()
    except pulse.SoundServerError as e:
        problems.append({"code": e.code, "message": e.message})
    except (OSError, subprocess.SubprocessError) as e:
        problems.append({"code": "NO_SOUND_SERVER", "message": f"cannot list audio sources: {e}"})
    return chans, problems
