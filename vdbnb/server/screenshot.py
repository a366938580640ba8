"""The latest frame of a display stream, as an agent may see it: decoded from the stored fragments, read with
OCR, every secret's text line blacked out, the window title from the recorder.

Excluded windows never reach this point: the recorder blacks them out (and drops their titles) before it
encodes a frame. What is left to hide is text that only the server can read: secrets on screen.
"""
from __future__ import annotations

import base64
import io
import threading

import numpy as np

from ..media.fragments import unpack
from .errors import APIError

_READER = None
_READER_LOCK = threading.Lock()
PAD = 6   # pixels left and right of a blacked-out line: OCR boxes hug the glyphs
VPAD = 3  # above and below (less: terminal lines sit close together)


def _reader():
    """One ScreenReader for every request: its line cache (keyed by ink) makes a repeated look cheap."""
    global _READER
    with _READER_LOCK:
        if _READER is None:
            from ..ai.ocr import ScreenReader
            _READER = ScreenReader()
        return _READER


def latest_frame(ctx, rts: dict, at: float | None = None):
    """(fragment, (pts, RGB frame)): the newest stored frame of a screen stream, or the newest at or before
    ``at``. A fragment that continues a GOP (``gop_seq``) is decoded on its GOP's earlier fragments."""
    from ..media.decode import VideoStreamDecoder
    q, p = "SELECT seq, path FROM fragments WHERE rtstream_id=?", [rts["id"]]
    if at is not None:
        q += " AND t0 <= ?"
        p.append(at)
    rows = ctx.store.all(q + " ORDER BY seq DESC LIMIT 3", p)
    for r in rows:  # the newest fragment that decodes (one whose GOP is incomplete does not)
        frag = unpack(ctx.ingest.fragment_bytes(r["path"]))
        if frag.kind != "video" or not frag.packets:
            continue
        dec = VideoStreamDecoder(lambda a, b: ctx.ingest.load_range(rts["id"], a, b))
        best = None
        for pts, rgb in dec.frames(frag):
            if at is None or pts <= at or best is None:
                best = (pts, rgb)
        if best is not None:
            return frag, best
    if rows:
        raise APIError(404, f"the newest fragments of {rts['id']} do not decode yet (their GOP is incomplete); "
                            "ask again in a moment", "NO_FRAME")
    raise APIError(404, f"no frame stored yet for {rts['id']}: the display has not been recorded (start a capture "
                        "with this display, then ask again)", "NO_FRAME")


def secret_lines(lines: list, scan) -> tuple[list[int], list[str]]:
    """Indexes of the OCR lines that hold (part of) a secret, and the kinds found. The lines are scanned as
    one text (joined by newlines) so a secret whose label and value OCR split into two boxes is still found."""
    text, spans = "", []
    for ln in lines:
        spans.append((len(text), len(text) + len(ln.text)))
        text += ln.text + "\n"
    hit: set[int] = set()
    kinds: set[str] = set()
    for f in scan(text):
        kinds.add(f.label)
        hit |= {i for i, (a, b) in enumerate(spans) if a < f.end and f.start < b}
    return sorted(hit), sorted(kinds)


def blackout_boxes(lines: list, hide: list[int], w: int, h: int) -> list[tuple[int, int, int, int]]:
    """The boxes to black out: each secret line, padded, but not into a neighbouring line that stays (lines
    of a terminal sit a pixel or two apart). A neighbour that overlaps the secret line by more than a quarter
    of its height loses that part rather than the secret showing."""
    keep = [ln.box for i, ln in enumerate(lines) if i not in set(hide)]
    out = []
    for i in hide:
        x0, y0, x1, y1 = lines[i].box
        bx0, bx1, by0, by1 = max(0, x0 - PAD), min(w, x1 + PAD), max(0, y0 - VPAD), min(h, y1 + VPAD)
        slack = (y1 - y0) / 4
        for kx0, ky0, kx1, ky1 in keep:
            if kx1 <= bx0 or bx1 <= kx0 or ky1 <= by0 or by1 <= ky0:
                continue
            if ky0 < y0 and ky1 <= y0 + slack:      # a line above reaches into the padding
                by0 = max(by0, ky1)
            elif ky1 > y1 and ky0 >= y1 - slack:    # a line below
                by1 = min(by1, ky0)
        out.append((bx0, by0, bx1, by1))
    return out


def black_out(rgb: np.ndarray, boxes: list) -> np.ndarray:
    out = rgb.copy()
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = 0
    return out


def encode(rgb: np.ndarray, fmt: str, max_width: int | None) -> tuple[bytes, str, int, int]:
    from PIL import Image
    img = Image.fromarray(rgb)
    if max_width and img.width > max_width:
        img = img.resize((max_width, max(1, round(img.height * max_width / img.width))), Image.LANCZOS)
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=85)
    else:
        img.save(buf, "PNG", optimize=False)
    return buf.getvalue(), f"image/{fmt}", img.width, img.height


def screen_frame(ctx, rts: dict, at: float | None = None, fmt: str = "png", max_width: int | None = None) -> dict:
    """The newest frame of a screen RTStream with its OCR text and window title, secrets blacked out."""
    from ..ai.secrets import redact, scan
    if rts["channel_id"] != "screen":
        raise APIError(400, f"{rts['id']} is a {rts['channel_id']} stream; frames come from screen streams "
                            "(cap.get_rtstream('screen'))", "NOT_VIDEO")
    frag, (pts, rgb) = latest_frame(ctx, rts, at)
    lines = _reader().read(rgb)
    hide, kinds = secret_lines(lines, scan)
    if hide:
        rgb = black_out(rgb, blackout_boxes(lines, hide, rgb.shape[1], rgb.shape[0]))
    ocr_text = redact("\n".join(ln.text for ln in lines))
    title = frag.meta.get("window_title")
    data, mime, w, h = encode(rgb, fmt, max_width)
    return {"rtstream_id": rts["id"], "session_id": rts["session_id"], "display": rts["source_channel_id"],
            "time": pts, "mime_type": mime, "width": w, "height": h, "image_b64": base64.b64encode(data).decode(),
            "ocr_text": ocr_text, "window_title": redact(title) if title else None,
            "app": frag.meta.get("app"), "active_on_display": frag.meta.get("active_on_display"),
            "paused": bool(frag.meta.get("paused")), "redacted": kinds, "redacted_lines": len(hide)}
