"""Screen OCR with rapidocr (PP-OCR models bundled in the package, onnxruntime), re-reading only what changed."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from . import missing, ort_session_options

log = logging.getLogger("vdbnb.ai.ocr")
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1/y1 exclusive)


@dataclass
class OcrLine:
    text: str
    box: Box
    score: float


_ENGINE = None
_ENGINE_LOCK = threading.Lock()
_POOL = None
REC_BUCKET_TOL = 1.15  # lines recognised in one batch differ in aspect ratio by at most this factor
REC_BUCKET_MAX = 4     # and are at most this many (small batches: they are padded to their widest line)


def _threads() -> int:
    from . import settings

    return max(1, settings().ocr_threads)


def _engine():
    """The shared RapidOCR engine (loaded once; onnxruntime threads limited by VDBNB_OCR_THREADS, default 2).

    Its onnxruntime sessions are replaced by ours: threads that sleep instead of spinning when idle (the
    box is shared with speech-to-text and the other pipelines, where spinning threads steal CPU from each
    other), one intra-op thread for recognition (ScreenReader runs line batches in parallel instead, which
    scales better than splitting one small batch), and the recogniser's MatMul weights quantised to int8
    (see ``_quantized_rec``: same text on rendered screens, ~10 % less CPU).
    """
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as e:
                raise missing("rapidocr") from e
            threads = _threads()
            params = {
                "Global.log_level": "error",
                "Global.use_cls": False,  # screen text is upright; the angle classifier only costs time
                "Global.text_score": 0.5,
                # detection runs on the size ScreenReader gives it (it downscales itself): no upscaling
                "Det.limit_type": "max",
                "Det.limit_side_len": 4096,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                # ScreenReader makes its own batches of lines of similar width (see _rec_batches); the
                # minimum width is lowered from 320 so a short word is not padded to a long line
                "Rec.rec_batch_num": REC_BUCKET_MAX,
                "Rec.rec_img_shape": [3, 48, 96],
            }
            eng = RapidOCR(params=params)
            blank = np.full((48, 96, 3), 255, np.uint8)
            eng(blank, use_det=True, use_cls=False, use_rec=False)  # rapidocr loads its models on first use
            eng.recognize_txt([blank])
            _tune_sessions(eng, threads)
            _ENGINE = eng
        return _ENGINE


def _tune_sessions(eng, threads: int) -> None:
    """Swap the engine's onnxruntime sessions for ours (see ``_engine``); keep rapidocr's where that fails."""
    import onnxruntime as ort

    for part, n, quantize in ((eng.text_det, threads, False), (eng.text_rec, 1, True)):
        wrapper = getattr(getattr(part, "session", None), "session", None)
        src = getattr(wrapper, "_model_path", None)
        if not src or not os.path.exists(src):
            continue
        path = (_quantized_rec(src) if quantize else None) or src
        try:
            part.session.session = ort.InferenceSession(path, sess_options=ort_session_options(n, spinning=False),
                                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # pragma: no cover - a broken cache file: keep rapidocr's own session
            log.warning("OCR: keeping rapidocr's session for %s (%s)", path, e)


def _quantized_rec(src: str) -> str | None:
    """``src`` with its MatMul/Gemm weights quantised to int8 (onnxruntime dynamic quantisation), derived once
    into ``model_cache_dir()`` and keyed by the source's content; None when that is not possible (the
    ``onnx`` package missing, VDBNB_OCR_INT8=0), and the float model is used.

    Only the MatMuls: the convolutions stay float (quantising them too loses characters at line ends)."""
    from . import settings

    if not settings().ocr_int8:
        return None
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from . import model_cache_dir

        with open(src, "rb") as f:
            digest = hashlib.blake2b(f.read(), digest_size=8).hexdigest()
        name = os.path.splitext(os.path.basename(src))[0]
        out = model_cache_dir() / f"{name}.matmul-int8.{digest}.ort{onnxruntime.__version__}.onnx"
        if not out.exists():
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            logging.disable(logging.WARNING)  # the quantiser advises pre-processing on the root logger
            try:
                quantize_dynamic(src, str(tmp), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm"])
            finally:
                logging.disable(logging.NOTSET)
            os.replace(tmp, out)
        return str(out)
    except Exception as e:  # ImportError (no onnx), a read-only cache, an op the quantiser does not know
        log.info("OCR: float recogniser (int8 quantisation unavailable: %s)", e)
        return None


def _pool():
    """Threads that recognise batches of lines in parallel (VDBNB_OCR_THREADS of them)."""
    global _POOL
    with _ENGINE_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(_threads(), thread_name_prefix="ocr-rec")
        return _POOL


def _rec_batches(crops: list[np.ndarray], tol: float = REC_BUCKET_TOL, most: int = REC_BUCKET_MAX) -> list[list[int]]:
    """Indexes of ``crops`` grouped into batches of similar aspect ratio, widest batches first.

    Every line of a batch is padded to the batch's widest: rapidocr's fixed batches of 6 padded ~30 % of the
    recogniser's input on a typical screen (short labels batched with long lines)."""
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(1, crops[i].shape[0]))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        r = crops[i].shape[1] / max(1, crops[i].shape[0])
        if cur and (len(cur) >= most or r > tol * crops[cur[0]].shape[1] / max(1, crops[cur[0]].shape[0])):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out[::-1]


def _recognize(eng, crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """(text, score) of each line crop: batches of similar width, run in parallel on the OCR threads."""
    batches = _rec_batches(crops)

    def one(idx: list[int]):
        rec = eng.recognize_txt([crops[i] for i in idx])
        return idx, rec.txts, rec.scores

    res: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    outs = map(one, batches) if len(batches) < 2 or _threads() < 2 else _pool().map(one, batches)
    for idx, txts, scores in outs:
        for i, text, score in zip(idx, txts, scores):
            res[i] = (str(text).strip(), float(score))
    return res


class ScreenReader:
    """Read text from RGB screen frames, optionally only inside given boxes.

    Lines whose ink was already recognised are answered from a cache (keyed by the ink, not its place: a
    window that moved or scrolled is not read again), so re-reading a region where little changed costs only
    the detection pass. Recognition runs in batches of lines of similar width, in parallel on
    VDBNB_OCR_THREADS threads.
    """

    def __init__(self, pad: int = 6, min_score: float = 0.5, det_scale: float = 0.5, cache_size: int = 4096,
                 rec_margin: float = 0.0):
        self.pad = pad
        # background added above and below each line before recognition: the recogniser scales lines to a
        # fixed height, so a margin makes its input narrower. Measured on rendered 1080p UI text: 0.15 → ~30 %
        # less recognition CPU but 99.3 % instead of 100 % of characters (a space or letter lost); off by default.
        self.rec_margin = rec_margin
        self.min_score = min_score
        self.det_scale = det_scale  # text detection runs on a downscaled copy; recognition at full size
        self.cache_size = cache_size
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def read(self, rgb: np.ndarray, boxes: list[Box] | None = None,
             prev: np.ndarray | None = None) -> list[OcrLine]:
        """OCR lines (top-to-bottom, left-to-right) of the frame, or of the given regions only.

        With ``prev`` (the previous frame, same size), lines whose pixels did not change are skipped: only
        new or changed text is read and returned.
        """
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] < 3:
            raise ValueError(f"ScreenReader.read needs an HxWx3 uint8 RGB array, got shape {img.shape}")
        h, w = img.shape[:2]
        regions = [(0, 0, w, h)] if boxes is None else list(boxes)
        out: list[OcrLine] = []
        for x0, y0, x1, y1 in regions:
            x0, y0 = max(0, int(x0) - self.pad), max(0, int(y0) - self.pad)
            x1, y1 = min(w, int(x1) + self.pad), min(h, int(y1) + self.pad)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            old = None
            if prev is not None and np.shape(prev)[:2] == (h, w):
                old = np.asarray(prev)[y0:y1, x0:x1, :3]
            out += self._read_crop(img[y0:y1, x0:x1, :3], x0, y0, old)
        out.sort(key=lambda ln: (ln.box[1] // 8, ln.box[0]))
        return _dedupe(out)

    def _read_crop(self, crop: np.ndarray, ox: int, oy: int, old: np.ndarray | None = None) -> list[OcrLine]:
        """Detect lines on a downscaled copy, recognise each line at full resolution (cached by its ink)."""
        from rapidocr.utils.process_img import get_rotate_crop_image

        bgr = np.ascontiguousarray(crop[:, :, ::-1], dtype=np.uint8)
        eng = _engine()
        s = self.det_scale
        small = bgr
        if s < 1.0 and min(bgr.shape[:2]) * s >= 32:
            import cv2

            small = cv2.resize(bgr, (max(1, round(bgr.shape[1] * s)), max(1, round(bgr.shape[0] * s))),
                               interpolation=cv2.INTER_AREA)
        else:
            s = 1.0
        with self._lock:
            det = eng(small, use_det=True, use_cls=False, use_rec=False)
            polys = getattr(det, "boxes", None)
            if polys is None or len(polys) == 0:
                return []
            polys = [np.asarray(p, np.float32) / s for p in polys]
            if old is not None:
                polys = [p for p in polys if _changed(crop, old, p)]
                if not polys:
                    return []
            keys = [_key(bgr[max(0, int(p[:, 1].min())):int(np.ceil(p[:, 1].max())) + 1,
                             max(0, int(p[:, 0].min())):int(np.ceil(p[:, 0].max())) + 1]) for p in polys]
            todo = [i for i, k in enumerate(keys) if k not in self._cache]
            if todo:
                crops = [_margin(get_rotate_crop_image(bgr, polys[i].copy()), self.rec_margin) for i in todo]
                rec = _recognize(eng, crops)
                for i, value in zip(todo, rec):
                    self._remember(keys[i], value)
        lines = []
        for p, k in zip(polys, keys):
            text, score = self._cache.get(k, ("", 0.0))
            if not text or score < self.min_score:
                continue
            box = (int(p[:, 0].min()) + ox, int(p[:, 1].min()) + oy, int(np.ceil(p[:, 0].max())) + ox,
                   int(np.ceil(p[:, 1].max())) + oy)
            lines.append(OcrLine(text, box, score))
        return lines

    def _remember(self, key: bytes, value: tuple[str, float]) -> None:
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.pop(next(iter(self._cache)))


def _margin(crop: np.ndarray, frac: float) -> np.ndarray:
    """``crop`` with ``frac`` of its height of background colour added above and below."""
    m = int(round(crop.shape[0] * frac))
    if m <= 0 or crop.shape[0] < 2:
        return crop
    bg = np.median(np.concatenate([crop[0], crop[-1]]), axis=0).astype(crop.dtype)
    band = np.broadcast_to(bg, (m, crop.shape[1], crop.shape[2]))
    return np.ascontiguousarray(np.concatenate([band, crop, band]))


def _key(crop: np.ndarray, tol: int = 40) -> bytes:
    """Cache key of a line: a hash of its ink (the pixels of its box in the frame that differ from the box's
    border colour), trimmed to their bounding box, so the same text read again from a window that moved or
    scrolled, or from a detection box a pixel larger or smaller, is answered from the cache. (Not the
    recogniser's crop: a box detected a hair rotated is resampled, and its pixels change.)"""
    core = crop
    if crop.shape[0] > 2 and crop.shape[1] > 2:
        border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
        bg = np.median(border, axis=0)
        ink = (np.abs(crop.astype(np.int16) - bg.astype(np.int16)) > tol).any(axis=2)
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        if rows.size:
            core = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return hashlib.blake2b(np.ascontiguousarray(core).tobytes(), digest_size=16).digest() + bytes(
        str(core.shape), "ascii")


def _changed(new: np.ndarray, old: np.ndarray, poly: np.ndarray, tol: int = 12, core: float = 0.2) -> bool:
    """Whether the pixels of a detected line differ between two crops of the same place.

    Only the line's core is compared: the detected box is the text grown by a margin (~0.2 of its height
    on each side), and a change in that margin alone (a window edge or a caret next to the text, a
    neighbour's box) leaves the text as it was."""
    x0, y0 = max(0, int(poly[:, 0].min())), max(0, int(poly[:, 1].min()))
    x1, y1 = int(np.ceil(poly[:, 0].max())) + 1, int(np.ceil(poly[:, 1].max())) + 1
    m = int((y1 - y0) * core)
    x0, y0, x1, y1 = x0 + m, y0 + m, max(x0 + m + 1, x1 - m), max(y0 + m + 1, y1 - m)
    a, b = new[y0:y1, x0:x1], old[y0:y1, x0:x1]
    return a.size == 0 or bool((np.abs(a.astype(np.int16) - b.astype(np.int16)) > tol).any())


def _dedupe(lines: list[OcrLine]) -> list[OcrLine]:
    """Drop lines read twice where padded regions overlap (same text, overlapping boxes)."""
    out: list[OcrLine] = []
    for ln in lines:
        if any(o.text == ln.text and _iou(o.box, ln.box) > 0.5 for o in out):
            continue
        out.append(ln)
    return out


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


class ChangeDetector:
    """Which parts of the screen changed since the previous frame, as merged boxes of ``tile``-sized tiles.

    Frames are compared as grayscale downscaled by ``scale`` (block means), so the cost is a few ms for
    1080p. A tile changed when any of its downscaled pixels moved by more than ``threshold`` gray levels.
    The first frame (or a change of size) returns the whole screen.
    """

    def __init__(self, tile: int = 64, threshold: float = 10.0, scale: int = 4):
        if tile % scale:
            raise ValueError("tile must be a multiple of scale")
        self.tile, self.threshold, self.scale = tile, threshold, scale
        self._prev: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None

    def reset(self) -> None:
        self._prev = None

    def _small(self, rgb: np.ndarray) -> np.ndarray:
        s = self.scale
        h, w = rgb.shape[:2]
        hh, ww = h // s * s, w // s * s
        try:  # OpenCV (installed with rapidocr) does this ~10x faster than numpy
            import cv2

            g = cv2.cvtColor(np.ascontiguousarray(rgb[:hh, :ww, :3], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
            return cv2.resize(g, (ww // s, hh // s), interpolation=cv2.INTER_AREA).astype(np.float32)
        except ImportError:
            pass
        x = rgb[:hh, :ww, :3].astype(np.float32)
        gray = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
        return gray.reshape(hh // s, s, ww // s, s).mean(axis=(1, 3))

    def update(self, rgb: np.ndarray) -> list[Box]:
        """Boxes (x0, y0, x1, y1) of the regions that changed since the last call."""
        img = np.asarray(rgb)
        h, w = img.shape[:2]
        small = self._small(img)
        prev, self._prev = self._prev, small
        if prev is None or self._shape != (h, w):
            self._shape = (h, w)
            return [(0, 0, w, h)]
        diff = np.abs(small - prev) > self.threshold
        k = self.tile // self.scale
        gh, gw = -(-diff.shape[0] // k), -(-diff.shape[1] // k)
        pad = np.zeros((gh * k, gw * k), bool)
        pad[: diff.shape[0], : diff.shape[1]] = diff
        grid = pad.reshape(gh, k, gw, k).any(axis=(1, 3))
        if not grid.any():
            return []
        boxes = []
        for r0, c0, r1, c1 in _components(grid):
            boxes.append((c0 * self.tile, r0 * self.tile, min(w, (c1 + 1) * self.tile),
                          min(h, (r1 + 1) * self.tile)))
        return _merge_boxes(boxes)


def _components(grid: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (r0, c0, r1, c1, inclusive) of 8-connected groups of True cells."""
    seen = np.zeros_like(grid)
    out = []
    rows, cols = grid.shape
    for r, c in zip(*np.nonzero(grid)):
        if seen[r, c]:
            continue
        stack = [(r, c)]
        seen[r, c] = True
        r0 = r1 = r
        c0 = c1 = c
        while stack:
            y, x = stack.pop()
            r0, r1, c0, c1 = min(r0, y), max(r1, y), min(c0, x), max(c1, x)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < rows and 0 <= xx < cols and grid[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
        out.append((int(r0), int(c0), int(r1), int(c1)))
    return out


def _merge_boxes(boxes: list[Box]) -> list[Box]:
    """Merge overlapping or touching boxes until none overlap."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes, key=lambda b: (b[1], b[0]))
