"""Times as an agent writes them: "15m" / "2h" / "1d" ago, ISO 8601, or epoch seconds."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

_REL = re.compile(r"^\s*-?\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?)"
                  r"(?:\s+ago)?\s*$", re.I)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FORMS = "'15m', '2h' or '1d' ago, an ISO 8601 time ('2026-11-29T10:00:00Z', local time without a zone), or " \
        "epoch seconds"


def parse_time(value: str | float | int | None, now: float | None = None) -> float | None:
    """Epoch seconds for ``value``; ``None`` stays ``None``. Raises ValueError naming the accepted forms."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    now = time.time() if now is None else now
    if isinstance(value, (int, float)):
        return float(value)
    s = value.strip()
    if s.lower() == "now":
        return now
    m = _REL.match(s)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)[0].lower()]
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read the time {value!r}: use {FORMS}") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # a time without a zone is the user's local time
    return dt.timestamp()


def iso(t: float | None) -> str | None:
    """UTC ISO 8601 with a Z, to the second."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock(t: float | None) -> str:
    """Local wall-clock time (what the user saw on their clock)."""
    if t is None:
        return "--:--:--"
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


def zone() -> str:
    return datetime.now().astimezone().strftime("%Z (UTC%z)")
