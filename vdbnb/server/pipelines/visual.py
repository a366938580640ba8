"""Seeing the screen: change detection on each frame, OCR of what changed only, the active window from the
recorder, and prompt-driven visual_index events. A static screen costs a frame diff and nothing else."""
from __future__ import annotations

import logging

import numpy as np

from ...events import VISUAL_INDEX, Event, event_id
from ...media.fragments import Fragment
from ..store import dec, now
from .base import Worker
from .indexer import engine_name, llm_engine, llm_sees_images

log = logging.getLogger("vdbnb.server.pipelines.visual")
OCR_MIN_INTERVAL = 0.9  # seconds of media between two OCR passes on one stream (changes accumulate)


def _intersects(a, b) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def _grow(boxes: list, lines: list, w: int, h: int) -> list:
    """Grow changed boxes to whole text lines they touch, so a re-read never cuts words in half."""
    out = []
    for b in boxes:
        box = tuple(b)
        grown = True
        while grown:
            grown = False
            for ln in lines:
                if _intersects(ln.box, box):
                    nb = (min(box[0], ln.box[0]), min(box[1], ln.box[1]), max(box[2], ln.box[2]),
                          max(box[3], ln.box[3]))
                    if nb != box:
                        box, grown = nb, True
        out.append((max(0, box[0] - 8), max(0, box[1] - 4), min(w, box[2] + 8), min(h, box[3] + 4)))
    return out


def _cursor(idx: dict) -> int:
    """The last fragment seq a visual index has seen (-1: none yet)."""
    return int(idx["cursor"]) if idx["cursor"] is not None else -1


def _same_screen(a: tuple | None, b: tuple) -> bool:
    """Same window and (allowing for OCR noise between two reads of the same pixels) the same text."""
    if a is None or a[:2] != b[:2]:
        return False
    import difflib
    norm = [" ".join(sorted(x.lower().split())) for x in (a[2], b[2])]
    return difflib.SequenceMatcher(None, norm[0], norm[1], autojunk=False).ratio() >= 0.9


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
        self.gen = 0                   # bumped on every visible change; each index remembers the one it saw
        self.last_pts = 0.0
        self.last_frame = None
        self.last_seq = -1
        self.decoder = None

    def update(self, rgb: np.ndarray, t: float, force: bool = False) -> bool:
        boxes = self.detector.update(rgb)
        if boxes:
            self.pending.extend(boxes)
            self.gen += 1
        self.last_frame = rgb
        self.last_pts = t
        if not self.pending or (not force and t - self.last_ocr_t < OCR_MIN_INTERVAL):
            return False
        boxes, self.pending = _grow(self.pending, self.lines, rgb.shape[1], rgb.shape[0]), []
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
        self.last_sig: dict[str, tuple] = {}
        self.seen_gen: dict[str, int] = {}
        self.waiting: dict[str, set] = {}  # rtstream id -> index ids with a change held back by the time gate
        self.alerted: dict[str, set] = {}  # index id -> fingerprints of the secrets on screen at its last event

    def streams(self) -> list[dict]:
        return self.ctx.store.all(
            "SELECT * FROM rtstreams WHERE channel_id='screen' AND id IN "
            "(SELECT rtstream_id FROM scene_indexes WHERE extraction_type!='transcript' AND status!='stopped')")

    def _indexes(self, rts: dict) -> list[dict]:
        return self.ctx.store.all("SELECT * FROM scene_indexes WHERE rtstream_id=? AND extraction_type!='transcript' "
                                  "AND status!='stopped'", (rts["id"],))

    def start_after(self, rts: dict) -> int:
        """Each visual index has its own cursor (``scene_indexes.cursor``): a new index on a live display starts
        at the newest fragment, one on a stopped session re-reads the stored media; frames are decoded and
        OCR'd once for all the indexes that still need them."""
        curs = [_cursor(i) for i in self._indexes(rts)]
        return min(curs) if curs else rts["last_seq"]

    def process(self, rts: dict, frag: Fragment) -> None:
        from ...media.decode import VideoStreamDecoder
        st = self.screens.get(rts["id"])
        if st is not None and frag.seq <= st.last_seq:
            st = None  # re-reading stored media from an earlier point: start from a clean screen
        if st is None:
            st = self.screens[rts["id"]] = ScreenState()
            # one decoder per stream: a fragment continuing a GOP decodes on its predecessors' pictures
            # (a start mid-GOP reads the GOP's earlier fragments first)
            st.decoder = VideoStreamDecoder(lambda a, b, rid=rts["id"]: self.ctx.ingest.load_range(rid, a, b))
            self.stats["engine"] = "rapidocr (changed regions) + " + engine_name(llm_engine())
        title, app = frag.meta.get("window_title"), frag.meta.get("app")
        if (title, app) != (st.title, st.app):
            st.title, st.app = title, app
            st.gen += 1
        idxs = [i for i in self._indexes(rts) if _cursor(i) < frag.seq]
        if not idxs:
            return
        for pts, rgb in st.decoder.frames(frag):
            first = any(i["id"] not in self.last_emit for i in idxs)
            st.update(rgb, pts, force=first)
            for idx in idxs:
                self._maybe_emit(rts, idx, st, pts, first)
        st.last_seq = frag.seq
        for idx in idxs:  # only while this worker holds the stream (else the next holder moves them)
            self.p.leases.update_if_held(rts["id"], self.name, "scene_indexes", "id", idx["id"], cursor=frag.seq)

    def position(self, rts: dict) -> int:
        return self.start_after(rts)  # the indexes' own cursors, moved as each fragment is done

    def commit_point(self, rts: dict, seq: int) -> int | None:
        return None  # the indexes' cursors (above) are the ones that count

    def forget(self, rtstream_id: str) -> None:
        super().forget(rtstream_id)
        self.screens.pop(rtstream_id, None)
        self.waiting.pop(rtstream_id, None)

    def idle(self, rts: dict) -> None:
        """No newer frame (a static screen is not re-encoded): emit the changes the time gate held back."""
        held = self.waiting.pop(rts["id"], None)
        st = self.screens.get(rts["id"])
        if not held or st is None or st.last_frame is None:
            return
        for idx in self._indexes(rts):
            if idx["id"] in held:
                self._maybe_emit(rts, idx, st, st.last_pts, False, gate=False)

    def _maybe_emit(self, rts: dict, idx: dict, st: ScreenState, t: float, first: bool, gate: bool = True) -> None:
        cfg = dec(idx["extraction_config"], {}) or {}
        try:
            every = max(0.5, float(cfg.get("time", 2)))
        except (TypeError, ValueError):
            every = 2.0
        key = idx["id"]
        last = self.last_emit.get(key)
        if last is not None and self.seen_gen.get(key) == st.gen:
            return  # nothing changed since this index's last event
        if gate and last is not None and t - last < every:
            self.waiting.setdefault(rts["id"], set()).add(key)  # emitted by a later frame or by idle()
            return
        if st.pending:
            st.update(st.last_frame, t, force=True)
        self.seen_gen[key] = st.gen
        # the redaction step, first: what OCR read and the window's title and app are scanned together;
        # every engine below (LLM, VLM, embedder), the store, search, websockets and webhooks get the
        # redacted text, and a frame bound for a model has the lines that held a secret blacked out
        r = self.p.redactor
        scr = r.screen([(ln.text, ln.box) for ln in st.lines])
        title = r.text(st.title, "window_title") if st.title else None
        app = r.text(st.app, "app") if st.app else None
        findings = scr.findings + (title.findings if title else []) + (app.findings if app else [])
        title_s, app_s = (title.text if title else None), (app.text if app else None)
        screen_text = "\n".join(scr.texts)
        sig = (title_s, app_s, screen_text)
        if last is not None and _same_screen(self.last_sig.get(key), sig):
            return  # pixels moved (or encoder noise) but nothing readable changed
        self.last_sig[key] = sig
        context = ([f"Active window: {title_s}" + (f" ({app_s})" if app_s else "")] if title_s else [])
        context += [ln for ln in screen_text.splitlines() if ln.strip()]
        if not context:
            self.last_emit[key] = t
            return
        shown = {ln.text: scr.texts[i] for i, ln in enumerate(st.lines)}
        new_text = [shown.get(x) or r.text(x).text for x in st.new_text[-50:]]
        start = last if last is not None else t
        ev = Event(channel=VISUAL_INDEX, session_id=rts["session_id"], collection_id=rts["collection_id"],
                   rtstream_id=rts["id"], rtstream_name=rts["name"], channel_id="screen", index_id=idx["id"],
                   start=start, end=t, captured_at=t, id=event_id(idx["id"], VISUAL_INDEX, round(t, 2)),
                   data={"window_title": title_s, "app": app_s, "ocr_text": screen_text,
                         "new_text": new_text, "prompt": idx["prompt"], "index_name": idx["name"],
                         "source": rts["source_channel_id"]})
        if findings:
            ev.data["redacted"] = sorted({f.label for f in findings if f.redacted})
        # alert the moment a secret appears (once while it stays on screen), before the model sees anything
        seen = {f.fingerprint for f in findings}
        new = [f for f in findings if f.fingerprint not in self.alerted.get(key, set())]
        self.alerted[key] = seen
        if new:
            self.p.alerts.secrets(ev, new, idx["ws_connection_id"])
        llm = llm_engine()
        images = None
        if llm_sees_images(llm):
            images = [r.mask(st.last_frame, scr.boxes)]
        res = llm.complete(idx["prompt"] or "Describe what is on the screen", context, images=images)
        summary = (getattr(res, "text", None) or str(res)).strip()
        head = f"{title_s}" + (f" ({app_s})" if app_s else "") if title_s else "Screen"
        ev.text = f"{head}: {summary}" if summary else head
        ev.engine = getattr(res, "engine", None) or engine_name(llm)
        ev.processed_at = now()
        self.p.emit(ev, target_ws=idx["ws_connection_id"], findings=findings)
        self.stats["last_event_at"] = ev.emitted_at
        st.new_text = []
        self.last_emit[key] = t
