"""Kernel side of capture: :class:`CaptureClient` (async, as ``videodb.capture``) and
:class:`SyncCaptureClient` (blocking facade for notebooks)."""
from vdbnb.capture.channels import (AudioChannel, CaptureEvent, Channel, ChannelList, Channels, KernelChannel,
                                    VideoChannel)
from vdbnb.capture.client import CaptureClient, SyncCaptureClient

__all__ = ["CaptureClient", "SyncCaptureClient", "CaptureEvent", "Channel", "AudioChannel", "VideoChannel",
           "KernelChannel", "ChannelList", "Channels"]
