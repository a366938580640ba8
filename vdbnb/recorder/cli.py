"""``vdbnb record`` / ``python -m vdbnb.recorder``: the recorder process speaking the line protocol.

The lead's CLI wires ``vdbnb record`` to :func:`main`."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from vdbnb.config import Settings, SettingsError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vdbnb record", description="vdbnb desktop recorder: speaks the "
                                 "videodb_recorder| line protocol on stdin/stdout (docs/recorder-protocol.md)")
    ap.add_argument("--api-url", default=None, help="server URL (default: init apiUrl, VDBNB_URL, VIDEO_DB_API)")
    ap.add_argument("--resend", metavar="SPOOL_DIR", help="resend the fragments kept in a session's spool dir "
                    "and exit (needs --api-url and --token)")
    ap.add_argument("--token", default=None, help="client token (default: $VDBNB_CLIENT_TOKEN)")
    ap.add_argument("--list-channels", action="store_true", help="print the channels as JSON and exit")
    a = ap.parse_args(argv)
    try:  # the recorder's settings, read once and passed down
        settings = Settings.from_env(url=a.api_url, client_token=a.token)
    except SettingsError as e:
        print(f"vdbnb record: {e}", file=sys.stderr)
        return 2
    from vdbnb.private_fs import restrict_umask
    restrict_umask()  # the spool holds the capture itself: whatever this process writes is owner-only
    if a.list_channels:
        from vdbnb.recorder.devices import list_channels

        chans, problems = list_channels(settings)
        print(json.dumps({"channels": [c.to_dict() for c in chans], "problems": problems}, indent=1))
        return 0
    if a.resend:
        from pathlib import Path

        from vdbnb.recorder.resend import resend_spool

        if not settings.url or not settings.client_token:
            ap.error("--resend needs --api-url and --token")
        res = asyncio.run(resend_spool(Path(a.resend), settings.url, settings.client_token))
        print(json.dumps(res, indent=1, default=str))
        return 0 if res["complete"] else 1
    from vdbnb.recorder.core import Recorder

    # stdout is the protocol channel: keep everything else off it. stderr is a pipe to the kernel too: when the
    # kernel dies, a log line must not raise BrokenPipeError out of the shutdown that stdin's EOF starts
    proto_out = sys.stdout
    sys.stderr = _Tolerant(sys.stderr)
    sys.stdout = sys.stderr
    rec = Recorder(out=proto_out, settings=settings)
    try:
        asyncio.run(rec.run())
    except KeyboardInterrupt:
        pass
    return 0


class _Tolerant:
    """A text stream whose writes never raise (the reader is gone: the line is dropped)."""

    def __init__(self, stream):
        self._s = stream

    def write(self, text):
        try:
            return self._s.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self):
        try:
            self._s.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._s, name)


if __name__ == "__main__":
    sys.exit(main())
