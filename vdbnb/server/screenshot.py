"""The latest frame of a display stream, as an agent may see it: decoded from the stored fragments, read with
OCR, every secret's text line blacked out (vdbnb/redaction.py), the window title from the recorder.

Excluded windows never reach this point: the recorder blacks them out (and drops their titles) before it
encodes a frame. What is left to hide is text that only the server can read: secrets on screen.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from ..media.fragments import unpack
from ..redaction import screen_reader
from .errors import APIError

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
    """The newest frame of a screen RTStream with its OCR text and window title, secrets blacked out by the one
    redaction step (vdbnb/redaction.py: the same scan, masks and boxes as the visual pipeline)."""
    if rts["channel_id"] != "screen":
        raise APIError(400, f"{rts['id']} is a {rts['channel_id']} stream; frames come from screen streams "
                            "(cap.get_rtstream('screen'))", "NOT_VIDEO")
    frag, (pts, rgb) = latest_frame(ctx, rts, at)
    r = ctx.redactor
    scr = r.screen([(ln.text, tuple(ln.box)) for ln in screen_reader().read(rgb)])
    if scr.boxes:
        rgb = r.mask(rgb, scr.boxes)
    title = frag.meta.get("window_title")
    red_title = r.text(title, "window_title") if title else None
    kinds = sorted({f.label for f in scr.findings + (red_title.findings if red_title else [])})
    data, mime, w, h = encode(rgb, fmt, max_width)
    return {"rtstream_id": rts["id"], "session_id": rts["session_id"], "display": rts["source_channel_id"],
            "time": pts, "mime_type": mime, "width": w, "height": h, "image_b64": base64.b64encode(data).decode(),
            "ocr_text": "\n".join(scr.texts), "window_title": red_title.text if red_title else None,
            "app": frag.meta.get("app"), "active_on_display": frag.meta.get("active_on_display"),
            "paused": bool(frag.meta.get("paused")), "redacted": kinds, "redacted_lines": len(scr.boxes)}
