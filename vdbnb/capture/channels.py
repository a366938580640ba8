"""What the recorder reports, as the official SDK's objects: :class:`CaptureEvent` and the channels
(:class:`Channel`, :class:`AudioChannel`, :class:`VideoChannel`, :class:`KernelChannel`, grouped in
:class:`Channels`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:
    from vdbnb.capture.client import CaptureClient


class CaptureEvent(dict):
    """A recorder event: a dict ``{"type": "event", "event", "payload"}`` that also reads as
    ``ev.event`` / ``ev.payload`` (the docs' style)."""

    @property
    def event(self) -> str:
        return self.get("event")

    @property
    def payload(self) -> dict:
        return self.get("payload") or {}

    @property
    def type(self) -> str:
        return self.get("type", "event")

    def __getattr__(self, k):  # payload keys as attributes (ev.channel_id)
        try:
            return self["payload"][k]
        except (KeyError, TypeError):
            raise AttributeError(k) from None


class Channel:
    def __init__(self, id: str, name: str, type: str, client: Optional["CaptureClient"] = None,
                 is_default: bool = False, info: dict | None = None):
        self.id = id
        self.name = name
        self.type = type
        self._client = client
        self.store = False
        self.is_primary = False
        self.is_default = is_default
        self.info = info or {}

    @property
    def channel_id(self) -> str:
        return self.id

    def __repr__(self):
        return f"{type(self).__name__}(id={self.id}, name={self.name})"

    def _track(self) -> str:
        return self.id  # vdbnb's recorder accepts channel ids (finer than the SDK's mic/system_audio/screen)

    async def pause(self) -> None:
        if not self._client:
            raise RuntimeError("Channel not bound to a CaptureClient")
        await self._client._send_command("pauseTracks", {"tracks": [self._track()]})

    async def resume(self) -> None:
        if not self._client:
            raise RuntimeError("Channel not bound to a CaptureClient")
        await self._client._send_command("resumeTracks", {"tracks": [self._track()]})

    def to_dict(self) -> Dict[str, Any]:
        return {"channel_id": self.id, "type": self.type, "name": self.name, "store": self.store,
                "is_primary": self.is_primary}


class AudioChannel(Channel):
    def __init__(self, id: str, name: str, client=None, **kw):
        super().__init__(id, name, "audio", client, **kw)


class VideoChannel(Channel):
    def __init__(self, id: str, name: str, client=None, **kw):
        super().__init__(id, name, "video", client, **kw)


class KernelChannel(Channel):
    """The notebook kernel as a channel: the cells it runs while the capture runs (vdbnb extension). Recorded in
    this process (``vdbnb/capture/kernel.py``), not by the recorder. ``private = True`` keeps every cell of the
    capture private (only "a private cell ran" is stored)."""

    def __init__(self, id: str = "kernel:current", name: str = "Notebook kernel (cells)", client=None, **kw):
        super().__init__(id, name, "kernel", client, **kw)
        self.private = False

    async def pause(self) -> None:
        raise NotImplementedError("the kernel channel cannot be paused; mark cells private instead "
                                  "(%%vdbnb_private, or %vdbnb_private on)")

    resume = pause


class ChannelList(list):
    @property
    def default(self) -> Optional[Channel]:
        for c in self:
            if c.is_default:
                return c
        return self[0] if self else None

    @property
    def primary(self) -> Optional[Channel]:
        for c in self:
            if c.info.get("is_primary"):
                return c
        return self.default

    def get(self, channel_id: str) -> Optional[Channel]:
        return next((c for c in self if c.id == channel_id), None)


class Channels:
    """The recorder's channels by kind, plus ``problems``: why some kind is missing (no display, a Wayland
    session, no sound server, no permission, no microphone), each ``{code, kind, message, hint}`` where
    ``hint`` says what to do."""

    def __init__(self, mics=None, displays=None, system_audio=None, cameras=None, kernels=None, problems=None):
        self.mics = ChannelList(mics or [])
        self.displays = ChannelList(displays or [])
        self.system_audio = ChannelList(system_audio or [])
        self.cameras = ChannelList(cameras or [])
        self.kernels = ChannelList(kernels or [])   # the notebook kernel, when listed from inside one
        self.problems: list[dict] = list(problems or [])

    def __repr__(self):
        probs = "".join(f"\n  {p.get('code')}: {p.get('message')}"
                        + (f"\n    what to do: {p['hint']}" if p.get("hint") else "") for p in self.problems)
        return (f"Channels(mics={len(self.mics)}, displays={len(self.displays)}, "
                f"system_audio={len(self.system_audio)}, cameras={len(self.cameras)}, kernels={len(self.kernels)})"
                + probs)

    def all(self) -> List[Channel]:
        """The media channels (the kernel channel is opt-in: ``channels.kernels.default``)."""
        return list(self.mics) + list(self.displays) + list(self.system_audio)

    def get(self, channel_id: str) -> Optional[Channel]:
        return next((c for c in self.all() + list(self.cameras) + list(self.kernels) if c.id == channel_id), None)
