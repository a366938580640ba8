"""Matplotlib timelines of a capture session: one lane per channel, seconds from session start on x."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vdbnb import events as E

LANE_ORDER = [E.MIC, E.SYSTEM_AUDIO, E.SCREEN, E.KERNEL]
COLORS = {E.TRANSCRIPT: "#2563eb", E.AUDIO_INDEX: "#7c3aed", E.VISUAL_INDEX: "#059669",
          E.SCENE_INDEX: "#059669", E.ALERT: "#dc2626", "level": "#9ca3af",
          "cell": "#4b5563", "failed cell": "#dc2626", "private cell": "#d1d5db"}


def _lane_of(row: Any) -> str:
    if row["channel"] == E.ALERT:
        return "alerts"
    cid = row.get("channel_id")
    if isinstance(cid, str) and cid:
        return E.category_of(cid)
    return E.SCREEN if row["channel"] in (E.VISUAL_INDEX, E.SCENE_INDEX) else E.MIC


def _levels_frame(levels: Any, t0: float | None) -> pd.DataFrame:
    """Accept a DataFrame with channel_id, rms and ts (epoch s or Timestamp) or t; or {channel_id: [(ts, rms)]}."""
    if isinstance(levels, dict):
        rows = [{"channel_id": c, "ts": ts, "rms": r} for c, pts in levels.items() for ts, r in pts]
        levels = pd.DataFrame(rows, columns=["channel_id", "ts", "rms"])
    lv = levels.copy()
    if "t" not in lv.columns:
        ts = lv["ts"]
        if pd.api.types.is_datetime64_any_dtype(ts):
            ts = ts.astype("int64") / 1e9
        lv["t"] = ts.astype(float) - (t0 if t0 is not None else float(ts.min()))
    return lv


def timeline(events_df: pd.DataFrame, levels: Any = None, ax: Any = None, title: str | None = None):
    """Draw a session timeline and return the Axes.

    Lanes (one per channel present): ``mic`` / ``system_audio`` with speech segments (final transcript spans)
    and audio-index spans, ``screen`` with screen changes (visual/scene index spans and markers), ``kernel``
    with each cell's run (failed cells red, marked ✕ and labelled with the exception; private cells pale),
    ``alerts`` with labelled markers. ``levels`` (optional; DataFrame ``channel_id, ts|t, rms``) draws each audio lane's
    level as a grey envelope behind its segments.
    """
    import matplotlib.pyplot as plt

    df = events_df
    t0 = df.attrs.get("session_start") if hasattr(df, "attrs") else None
    if t0 is None and len(df) and df["t"].notna().any():
        when = df["start"].fillna(df["captured_at"]).fillna(df["emitted_at"])
        t0 = float((when - df["t"]).dropna().iloc[0])
    lanes: list[str] = []
    if len(df):
        present = {_lane_of(r) for _, r in df.iterrows()}
    else:
        present = set()
    lv = _levels_frame(levels, t0) if levels is not None else None
    if lv is not None and len(lv):
        present |= {E.category_of(c) for c in lv["channel_id"].unique()}
    lanes = [x for x in LANE_ORDER if x in present] + (["alerts"] if "alerts" in present else [])
    if not lanes:
        lanes = [E.MIC, E.SCREEN]
    y = {name: i for i, name in enumerate(reversed(lanes))}
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * len(lanes)), layout="constrained")

    def rel(v: float | None) -> float | None:
        return None if v is None or (isinstance(v, float) and np.isnan(v)) or t0 is None else v - t0

    if lv is not None and len(lv):
        for cid, g in lv.groupby("channel_id"):
            lane = E.category_of(cid)
            g = g.sort_values("t")
            r = np.clip(g["rms"].to_numpy(float) / max(0.05, float(g["rms"].max())), 0, 1) * 0.38
            base = y[lane]
            ax.fill_between(g["t"].to_numpy(float), base - r, base + r, color="#111827", alpha=0.3, lw=0, zorder=3)

    handles: dict[str, Any] = {}
    for _, r in df.iterrows():
        lane = _lane_of(r)
        if lane not in y:
            continue
        yy = y[lane]
        ch = r["channel"]
        s, e = rel(r["start"]), rel(r["end"])
        if s is None:
            s = r["t"]
        if ch == E.TRANSCRIPT:
            if not bool(r["is_final"]) or e is None:
                continue
            h = ax.broken_barh([(s, max(e - s, 0.05))], (yy - 0.3, 0.6), color=COLORS[ch], alpha=0.8)
            handles.setdefault("speech", h)
        elif ch in (E.AUDIO_INDEX, E.VISUAL_INDEX, E.SCENE_INDEX):
            if e is not None and e > s:
                h = ax.broken_barh([(s, e - s)], (yy - 0.12, 0.24), color=COLORS[ch], alpha=0.55)
            else:
                h = ax.plot([s], [yy], marker="|", ms=18, mew=2, color=COLORS[ch], ls="")[0]
            handles.setdefault("screen change" if lane == E.SCREEN else "audio index", h)
        elif ch == E.KERNEL:
            d = r["data"] if isinstance(r["data"], dict) else {}
            what = "private cell" if d.get("private") else "failed cell" if d.get("status") == "error" else "cell"
            dur = max((e - s) if e is not None else 0.0, 0.15)
            h = ax.broken_barh([(s, dur)], (yy - 0.25, 0.5), color=COLORS[what], alpha=0.9)
            handles.setdefault(what, h)
            if what == "failed cell":
                ax.plot([s + dur / 2], [yy], marker="X", ms=11, color="#7f1d1d", ls="", zorder=5)
                ax.annotate(str(d.get("ename") or "error"), (s + dur / 2, yy + 0.25), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=8, color="#7f1d1d")
        elif ch == E.ALERT:
            h = ax.plot([s], [yy], marker="v", ms=10, color=COLORS[ch], ls="")[0]
            handles.setdefault("alert", h)
            if isinstance(r["label"], str):
                ax.annotate(r["label"], (s, yy), xytext=(0, 8), textcoords="offset points", ha="center",
                            fontsize=8, color=COLORS[ch])
    ax.set_yticks(list(y.values()), list(y.keys()))
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlabel("seconds from session start")
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if handles:
        ax.legend(list(handles.values()), list(handles.keys()), loc="upper right", fontsize=8, frameon=False,
                  ncol=len(handles))
    if title:
        ax.set_title(title)
    return ax
