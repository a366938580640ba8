"""Capture sources, each on its own thread: a worker that runs while anyone uses its channel (a preview or
the encoder). :class:`_Source` is what they share; :mod:`.screen` (displays via mss) and :mod:`.audio` (a
capture subprocess per channel) are the two kinds. Callbacks run on the source's thread."""
from __future__ import annotations

import threading
from typing import Callable


class _Source:
    """What a screen and an audio source share: a worker that runs while anyone uses the channel (a preview
    or the encoder); subclasses say how it starts (``_start``) and stops (``_stop``)."""
    preview: bool
    encoder_cb: Callable | None
    _thread: threading.Thread | None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def update(self):
        """(Re)start or stop the worker according to its users."""
        want = self.preview or self.encoder_cb is not None
        if want and not self.running:
            self._start()
        elif not want and self.running:
            self._stop()

    def stop(self):
        self.preview = False
        self.encoder_cb = None
        self.update()

    def _start(self):
        raise NotImplementedError

    def _stop(self):
        raise NotImplementedError
