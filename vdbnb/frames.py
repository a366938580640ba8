"""DataFrame builders: events as rows of the one schema (:data:`vdbnb.events.COLUMNS`).

Added columns:

- ``ts``: UTC :class:`pandas.Timestamp` of the media the event is about (``start``, else ``captured_at``,
  else ``emitted_at``);
- ``t``: seconds from the session start (``session_start`` if given, else the earliest ``ts``);
- ``latency``: ``emitted_at - captured_at`` in seconds (how long capture → result took).

``df.attrs["session_start"]`` holds the epoch second used for ``t``.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable

import numpy as np
import pandas as pd

from vdbnb.events import COLUMNS, TRANSCRIPT, Event

EXTRA = ["ts", "t", "latency"]
FRAME_COLUMNS = COLUMNS + EXTRA
_FLOATS = ["start", "end", "confidence", "captured_at", "processed_at", "emitted_at"]


def _row(e: Any) -> dict:
    if isinstance(e, Event):
        return e.row()
    if isinstance(e, dict):
        return {k: e.get(k) for k in COLUMNS}
    raise TypeError(f"not an event: {type(e).__name__}")


def _frame(rows: list[dict], session_start: float | None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in _FLOATS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["is_final"] = df["is_final"].astype("boolean")
    when = df["start"].fillna(df["captured_at"]).fillna(df["emitted_at"])
    if session_start is None:
        session_start = float(when.min()) if when.notna().any() else None
    df["ts"] = pd.to_datetime(when, unit="s", utc=True)
    df["t"] = (when - session_start) if session_start is not None else np.nan
    df["t"] = df["t"].astype("float64")
    df["latency"] = (df["emitted_at"] - df["captured_at"]).astype("float64")
    df.attrs["session_start"] = session_start
    return df


def events_frame(events: Iterable[Any], session_start: float | None = None) -> pd.DataFrame:
    """One row per event (``Event`` objects or row dicts), columns :data:`FRAME_COLUMNS`."""
    return _frame([_row(e) for e in events], session_start)


def transcript_frame(df: pd.DataFrame, final_only: bool = True) -> pd.DataFrame:
    """The transcript rows of an events frame (final ones by default), in media-time order."""
    out = df[df["channel"] == TRANSCRIPT]
    if final_only:
        out = out[out["is_final"].fillna(False).astype(bool)]
    cols = ["ts", "t", "channel_id", "text", "start", "end", "latency", "engine", "is_final", "session_id",
            "rtstream_id", "id"]
    return out.sort_values("ts", kind="stable")[cols].reset_index(drop=True)


class LiveFrame:
    """Events appended from any thread; :meth:`snapshot` returns a consistent DataFrame copy.

    >>> lf = LiveFrame(); lf.append(ev)   # e.g. from a websocket thread
    >>> lf.snapshot()                    # from the notebook
    """

    def __init__(self, session_start: float | None = None, max_rows: int | None = None):
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._session_start = session_start
        self._max_rows = max_rows
        self._cache: pd.DataFrame | None = None
        self._version = 0

    @property
    def session_start(self) -> float | None:
        return self._session_start

    @session_start.setter
    def session_start(self, value: float | None) -> None:
        with self._lock:
            self._session_start = value
            self._cache = None

    def append(self, event: Any) -> None:
        row = _row(event)
        with self._lock:
            self._rows.append(row)
            if self._max_rows and len(self._rows) > self._max_rows:
                del self._rows[: len(self._rows) - self._max_rows]
            self._cache = None
            self._version += 1

    def extend(self, events: Iterable[Any]) -> None:
        rows = [_row(e) for e in events]
        with self._lock:
            self._rows.extend(rows)
            self._cache = None
            self._version += 1

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._cache = None
            self._version += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    @property
    def version(self) -> int:
        return self._version

    def snapshot(self) -> pd.DataFrame:
        with self._lock:
            if self._cache is None:
                self._cache = _frame(list(self._rows), self._session_start)
            return self._cache.copy()
