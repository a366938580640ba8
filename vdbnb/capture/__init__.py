"""Kernel side of capture: :class:`CaptureClient` (async, as ``videodb.capture``) and
:class:`SyncCaptureClient` (blocking facade for notebooks)."""
from vdbnb.capture.client import (AudioChannel, CaptureClient, CaptureEvent, Channel, ChannelList, Channels,
                                  KernelChannel, SyncCaptureClient, VideoChannel)

__all__ = ["CaptureClient", "SyncCaptureClient", "CaptureEvent", "Channel", "AudioChannel", "VideoChannel",
           "KernelChannel", "ChannelList", "Channels"]
