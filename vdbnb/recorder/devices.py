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

from vdbnb.config import Settings
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
WAYLAND_HINT = ('capture screens from the browser instead: CapturePanel(source="browser") (the browser asks which '
                'screen or window to share); or log in to an X11 session (e.g. "GNOME on Xorg"). To record '
                'XWayland windows only, set VDBNB_CAPTURE_XWAYLAND=1.')
SOUND_SERVER_HINT = ("start the sound server (PipeWire: systemctl --user start pipewire-pulse; PulseAudio: "
                     "pulseaudio --start) or point PULSE_SERVER at it; pactl comes with pulseaudio-utils")


def _problem(code: str, kind: str, message: str, hint: str) -> dict[str, str]:
    return {"code": code, "kind": kind, "message": message, "hint": hint}


def wayland_session(settings: Settings) -> bool:
    return bool(settings.wayland_display) or (settings.session_type or "").lower() == "wayland"


def list_displays(settings: Settings) -> list[ChannelInfo]:
    """The screens mss sees (none, on Linux, without a usable X display: see :func:`displays_and_problem`)."""
    return displays_and_problem(settings)[0]


def displays_and_problem(settings: Settings) -> tuple[list[ChannelInfo], dict[str, str] | None]:
    """The screens mss sees, or none and why (``{code, kind, message, hint}``): a Wayland session (X11 capture
    would record black where Wayland windows are), no DISPLAY, a display that does not answer or refuses us."""
    display = settings.display
    posix_x11 = os.name == "posix" and not _is_mac()
    if posix_x11 and wayland_session(settings) and not settings.capture_xwayland:
        return [], _problem("WAYLAND", "display", "this is a Wayland session: screens cannot be captured natively "
                            "here (X11 capture would record black where Wayland windows are)", WAYLAND_HINT)
    if posix_x11 and not display:
        return [], _problem("NO_DISPLAY", "display", "no display: DISPLAY is not set (a headless machine, or a "
                            "shell outside the desktop session), so screens cannot be captured",
                            "run Jupyter from a terminal of your desktop session; a headless machine needs a "
                            "virtual desktop (this repository's rig/rig-up.sh makes one)")
    try:
        with open_mss() as m:
            mons = m.monitors
    except Exception as e:  # noqa: BLE001 - no X server / no permission: said, not raised
        text = str(e)
        if any(w in text.lower() for w in ("author", "permission", "access")):
            return [], _problem("PERMISSION_DENIED", "display", f"not allowed to read display {display}: {text}",
                                "run as the desktop's user, or allow this user on the X server "
                                "(xhost +SI:localuser:$USER) and check XAUTHORITY")
        return [], _problem("NO_DISPLAY", "display", f"cannot open display {display}: {text}",
                            "check that DISPLAY names a running X server (echo $DISPLAY; xdpyinfo) and that "
                            "XAUTHORITY points at its cookie")
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
    if not out:
        return [], _problem("NO_DISPLAY", "display", f"display {display} reports no monitors",
                            "turn a monitor on (or give the virtual display an output)")
    return out, None


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


def list_channels(settings: Settings) -> tuple[list[ChannelInfo], list[dict[str, str]]]:
    """All channels, plus what is missing and why, as ``{code, kind: display|audio, message, hint}`` (codes:
    WAYLAND, NO_DISPLAY, PERMISSION_DENIED, NO_SOUND_SERVER, NO_MICROPHONE)."""
    chans, problem = displays_and_problem(settings)
    problems = [problem] if problem else []
    try:
        audio = list_audio()
    except pulse.SoundServerError as e:
        if "access denied" in e.message.lower():
            problems.append(_problem("PERMISSION_DENIED", "audio", f"the sound server refused this user: {e.message}",
                                     "run as the desktop's user, or check PULSE_SERVER and PULSE_COOKIE"))
        else:
            problems.append(_problem(e.code, "audio", e.message, SOUND_SERVER_HINT))
    except (OSError, subprocess.SubprocessError) as e:
        problems.append(_problem("NO_SOUND_SERVER", "audio", f"cannot list audio sources: {e}", SOUND_SERVER_HINT))
    else:
        chans += audio
        if not any(c.channel_id.startswith("mic:") for c in audio):
            problems.append(_problem("NO_MICROPHONE", "audio", "the sound server has no input source, so there is "
                                     "no microphone to record", "plug in (or unmute/enable) a microphone; "
                                     "`pactl list short sources` lists what the sound server sees"))
    return chans, problems
