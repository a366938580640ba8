"""DataFrame builders: events as rows of the one schema (:data:`vdbnb.events.COLUMNS`).

:func:`scenes_frame` does the same for an index's scenes (``RTStreamSceneIndex.scenes_df()``).

Added columns:

- ``ts``: UTC :class:`pandas.Timestamp` of the media the event is about (``start``, else ``captured_at``,
  else ``emitted_at``);
- ``t``: seconds from the session start (``session_start`` if given, else the earliest ``ts``);
- ``latency``: ``emitted_at - captured_at`` in seconds (how long capture → result took);
- ``kind``: what the row is (``transcript``, ``visual_index``, ``alert``, ``cell``, ...; see
  :func:`vdbnb.events.kind_of`).

:func:`cells_frame` spreads the kernel's ``cell`` rows into columns (status, exception, outputs);
:func:`context_frame` keeps what happened around a moment (what :meth:`CaptureSession.context` returns).

``df.attrs["session_start"]`` holds the epoch second used for ``t``.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable

import numpy as np
import pandas as pd

from vdbnb.events import CAPTURE_SESSION, CELL, COLUMNS, PIPELINE, TRANSCRIPT, Event, kind_of

EXTRA = ["ts", "t", "latency", "kind"]
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
    df["kind"] = [kind_of(c, e) for c, e in zip(df["channel"], df["event"])]
    df.attrs["session_start"] = session_start
    return df


def events_frame(events: Iterable[Any], session_start: float | None = None) -> pd.DataFrame:
    """One row per event (``Event`` objects or row dicts), columns :data:`FRAME_COLUMNS`."""
    return _frame([_row(e) for e in events], session_start)


SCENE_COLUMNS = ["ts", "t", "duration", "text", "engine", "ocr_text", "window_title", "start", "end", "metadata"]


def scenes_frame(records: Iterable[dict], session_start: float | None = None) -> pd.DataFrame:
    """One row per scene of an index (``get_scenes()`` records): ``ts`` the UTC time it starts, ``t`` seconds from
    the session start (``session_start``, else the first scene), ``duration`` in seconds, the text and engine,
    what OCR read and the window title (visual indexes), and ``start``/``end`` as epoch seconds."""
    rows = []
    for r in records:
        meta = r.get("metadata") or {}
        rows.append({"text": r.get("text") or r.get("description"), "engine": r.get("engine"),
                     "ocr_text": meta.get("ocr_text"), "window_title": meta.get("window_title"),
                     "start": r.get("start"), "end": r.get("end"), "metadata": meta})
    df = pd.DataFrame(rows, columns=["text", "engine", "ocr_text", "window_title", "start", "end", "metadata"])
    for c in ("start", "end"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    if session_start is None and df["start"].notna().any():
        session_start = float(df["start"].min())
    df["ts"] = pd.to_datetime(df["start"], unit="s", utc=True)
    df["t"] = (df["start"] - session_start).astype("float64") if session_start is not None else np.nan
    df["duration"] = (df["end"] - df["start"]).astype("float64")
    df = df[SCENE_COLUMNS]
    df.attrs["session_start"] = session_start
    return df


def transcript_frame(df: pd.DataFrame, final_only: bool = True) -> pd.DataFrame:
    """The transcript rows of an events frame (final ones by default), in media-time order."""
    out = df[df["channel"] == TRANSCRIPT]
    if final_only:
        out = out[out["is_final"].fillna(False).astype(bool)]
    cols = ["ts", "t", "channel_id", "text", "start", "end", "latency", "engine", "is_final", "session_id",
            "rtstream_id", "id"]
    return out.sort_values("ts", kind="stable")[cols].reset_index(drop=True)


CELL_COLUMNS = ["ts", "t", "end", "duration", "execution_count", "status", "ename", "evalue", "source", "outputs",
                "traceback", "private", "notebook_path", "cell_id", "session_id", "rtstream_id", "start", "id"]


def cells_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The kernel's cell executions of an events frame, one row per cell in run order, with their data as columns:
    ``execution_count, status (ok/error), ename, evalue, source, outputs`` (text of the outputs, joined),
    ``traceback, private, duration, notebook_path``."""
    cells = df[df["kind"] == CELL].sort_values("start", kind="stable")
    rows = []
    for _, r in cells.iterrows():
        d = r["data"] if isinstance(r["data"], dict) else {}
        private = bool(d.get("private"))
        rows.append({
            "ts": r["ts"], "t": r["t"], "end": r["end"], "duration": d.get("duration"),
            "execution_count": d.get("execution_count"), "status": "private" if private else d.get("status"),
            "ename": d.get("ename"), "evalue": d.get("evalue"), "source": None if private else r["text"],
            "outputs": "\n".join(o.get("text") or "" for o in d.get("outputs") or [] if o.get("text")) or None,
            "traceback": d.get("traceback"), "private": private, "notebook_path": d.get("notebook_path"),
            "cell_id": d.get("cell_id"), "session_id": r["session_id"], "rtstream_id": r["rtstream_id"],
            "start": r["start"], "id": r["id"]})
    out = pd.DataFrame(rows, columns=CELL_COLUMNS)
    out["execution_count"] = out["execution_count"].astype("Int64")
    out.attrs["session_start"] = df.attrs.get("session_start")
    return out.reset_index(drop=True)


def context_frame(df: pd.DataFrame, t0: float, t1: float, pad: float = 5.0) -> pd.DataFrame:
    """What happened around ``[t0, t1]`` (epoch seconds): every result whose media span meets
    ``[t0 - pad, t1 + pad]`` — final transcripts, audio/visual index results, alerts, cells — in time order,
    with ``when`` = ``before`` / ``during`` / ``after`` (relative to ``[t0, t1]``) and ``overlap_s``, the seconds
    it shares with ``[t0, t1]``. Session lifecycle and pipeline notices are left out."""
    start = df["start"].fillna(df["captured_at"])
    end = df["end"].fillna(start)
    keep = (end >= t0 - pad) & (start <= t1 + pad) & ~df["channel"].isin([CAPTURE_SESSION, PIPELINE])
    keep &= ~((df["channel"] == TRANSCRIPT) & ~df["is_final"].fillna(False).astype(bool))
    out = df[keep].copy()
    s, e = start[keep], end[keep]
    out["when"] = np.where(e < t0, "before", np.where(s > t1, "after", "during"))
    out["overlap_s"] = (np.minimum(e, t1) - np.maximum(s, t0)).clip(lower=0).astype("float64")
    out = out.sort_values(["ts", "kind"], kind="stable").reset_index(drop=True)
    out.attrs.update(df.attrs)
    out.attrs.update({"t0": t0, "t1": t1, "pad": pad})
    return out


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
