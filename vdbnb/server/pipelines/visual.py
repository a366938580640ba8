"""Seeing the screen: change detection on each frame, OCR of what changed only, the active window from the
recorder, and prompt-driven visual_index events. A static screen costs a frame diff and nothing else."""
from __future__ import annotations

import logging

import numpy as np

from ...events import VISUAL_INDEX, Event
from ...fragments import Fragment
from ..store import dec, now
from .base import Worker
from .indexer import engine_name, llm_engine

log = logging.getLogger("vdbnb.server.pipelines.visual")
OCR_MIN_INTERVAL = 0.9  # seconds of media between two OCR passes on one stream (changes accumulate)


def _intersects(a, b) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


class ScreenState:
    """What is on one display now: OCR lines by box, the window title, what changed since the last event."""

    def __init__(self):
        from ...ai.ocr import ChangeDetector, ScreenReader
        self.detector = ChangeDetector()
        self.reader = ScreenReader()
        self.lines: list = []          # OcrLine
        self.pending: list = []        # changed boxes not yet read
        self.last_ocr_t = 0.0
        self.title = None
        self.app = None
        self.new_text: list[str] = []  # lines that appeared since the last event
        self.changed_since_event = False
        self.last_frame = None

    def update(self, rgb: np.ndarray, t: float, force: bool = False) -> bool:
        boxes = self.detector.update(rgb)
        if boxes:
            self.pending.extend(boxes)
            self.changed_since_event = True
        self.last_frame = rgb
        if not self.pending or (not force and t - self.last_ocr_t < OCR_MIN_INTERVAL):
            return False
        boxes, self.pending = self.pending, []
        fresh = self.reader.read(rgb, boxes)
        keep = [ln for ln in self.lines if not any(_intersects(ln.box, b) for b in boxes)]
        old = {ln.text for ln in self.lines}
        self.lines = sorted(keep + fresh, key=lambda ln: (ln.box[1] // 12, ln.box[0]))
        self.new_text += [ln.text for ln in fresh if ln.text not in old]
        self.last_ocr_t = t
        return True

    def text(self) -> str:
        return "\n".join(ln.text for ln in self.lines)


class VisualWorker(Worker):
    name = "visual"

    def __init__(self, pipes):
        super().__init__(pipes)
        self.screens: dict[str, ScreenState] = {}
        self.last_emit: dict[str, float] = {}

    def streams(self) -> list[dict]:
        return self.ctx.store.all(
            "SELECT * FROM rtstreams WHERE channel_id='screen' AND id IN "
            "(SELECT rtstream_id FROM scene_indexes WHERE extraction_type!='transcript' AND status!='stopped')")

    def process(self, rts: dict, frag: Fragment) -> None:
        from ...codec import iter_video_frames
        st = self.screens.get(rts["id"])
        if st is None:
            st = self.screens[rts["id"]] = ScreenState()
            self.stats["engine"] = "rapidocr (changed regions) + " + engine_name(llm_engine())
        title, app = frag.meta.get("window_title"), frag.meta.get("app")
        if (title, app) != (st.title, st.app):
            st.title, st.app = title, app
            st.changed_since_event = True
        idxs = self.ctx.store.all("SELECT * FROM scene_indexes WHERE rtstream_id=? AND extraction_type!='transcript' "
                                  "AND status!='stopped'", (rts["id"],))
        for pts, rgb in iter_video_frames([frag]):
            first = rts["id"] not in self.last_emit
            st.update(rgb, pts, force=first)
            for idx in idxs:
                self._maybe_emit(rts, idx, st, pts, first)

    def _maybe_emit(self, rts: dict, idx: dict, st: ScreenState, t: float, first: bool) -> None:
        cfg = dec(idx["extraction_config"], {}) or {}
        try:
            every = max(0.5, float(cfg.get("time", 2)))
        except (TypeError, ValueError):
            every = 2.0
        key = idx["id"]
        last = self.last_emit.get(key)
        if last is not None and (t - last < every or not st.changed_since_event):
            return
        if st.pending:
            st.update(st.last_frame, t, force=True)
        screen_text = st.text()
        context = ([f"Active window: {st.title}" + (f" ({st.app})" if st.app else "")] if st.title else [])
        context += [ln for ln in screen_text.splitlines() if ln.strip()]
        if not context:
            self.last_emit[key] = t
            self.last_emit[rts["id"]] = t
            return
        llm = llm_engine()
        images = [st.last_frame] if engine_name(llm).startswith("openai-compatible") else None
        res = llm.complete(idx["prompt"] or "Describe what is on the screen", context, images=images)
        summary = (getattr(res, "text", None) or str(res)).strip()
        head = f"{st.title}" + (f" ({st.app})" if st.app else "") if st.title else "Screen"
        text = f"{head}: {summary}" if summary else head
        start = last if last is not None else t
        ev = Event(channel=VISUAL_INDEX, session_id=rts["session_id"], collection_id=rts["collection_id"],
                   rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id="screen", index_id=idx["id"],
                   text=text, start=start, end=t, engine=getattr(res, "engine", None) or engine_name(llm),
                   captured_at=t, processed_at=now(),
                   data={"window_title": st.title, "app": st.app, "ocr_text": screen_text,
                         "new_text": st.new_text[-50:], "prompt": idx["prompt"], "index_name": idx["name"],
                         "source": rts["source_channel_id"]})
        self.p.emit(ev, target_ws=idx["ws_connection_id"])
        self.stats["last_event_at"] = ev.emitted_at
        st.new_text = []
        st.changed_since_event = False
        self.last_emit[key] = t
        self.last_emit[rts["id"]] = t
