"""Per-audio-channel capture process: reads the PulseAudio source named by env ``PULSE_SOURCE`` through
sounddevice (PortAudio → ALSA ``pulse`` plugin) and writes 16-bit (s16le) mono/stereo PCM to stdout, one
``--block`` of samples per write.

PortAudio opens one ``pulse`` device per process, and the plugin picks the source from the process's
environment, so capturing two different sources needs two processes: this is that process. It exits when the
source stops delivering (device gone), when stdout closes (recorder gone) or when stdin closes.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from vdbnb.config import Settings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--block", type=int, default=5760)
    ap.add_argument("--device", default="pulse")
    ap.add_argument("--stall", type=float, default=2.0, help="exit if no audio for this long (device gone)")
    a = ap.parse_args(argv)
    source = Settings.from_env().pulse_source  # PortAudio's pulse plugin opens it; named in errors
    import sounddevice as sd

    out = sys.stdout.buffer
    last = [time.monotonic()]
    dead = threading.Event()

    def cb(indata, frames, t, status):  # noqa: ARG001
        last[0] = time.monotonic()
        try:
            out.write(indata.tobytes())
            out.flush()
        except (BrokenPipeError, ValueError, OSError):
            dead.set()
            raise sd.CallbackAbort

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(1):
                pass
        except Exception:  # noqa: BLE001
            pass
        dead.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        dev = a.device if a.device in [d["name"] for d in sd.query_devices()] else None
        with sd.InputStream(device=dev, samplerate=a.rate, channels=a.channels, dtype="int16",
                            blocksize=a.block, latency="low", callback=cb):
            while not dead.is_set():
                if time.monotonic() - last[0] > a.stall:
                    print(f"audio source {source!r} delivered nothing for {a.stall}s "
                          "(device gone?)", file=sys.stderr, flush=True)
                    return 3
                dead.wait(0.2)
    except Exception as e:  # noqa: BLE001
        print(f"cannot capture {source!r}: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stderr.flush()
    os._exit(rc)  # skip interpreter shutdown: the stdin watcher thread would abort it
