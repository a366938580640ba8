"""OCR and change detection on rendered screens (PIL + DejaVu fonts)."""
import difflib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vdbnb.ai.ocr import ChangeDetector, ScreenReader

from .conftest import FONT, FONT_MONO

LIGHT = ["Quarterly revenue report 2024", "Open the settings panel", "Invoice #4471 due on 12 March"]
DARK = ["git commit -m 'fix login bug'", "Deploy status: pending review", "Server error rate 0.3%"]


def render(size=(1280, 720)):
    img = Image.new("RGB", size, (70, 90, 120))
    d = ImageDraw.Draw(img)
    f, fm = ImageFont.truetype(FONT, 20), ImageFont.truetype(FONT_MONO, 18)
    d.rectangle([30, 30, 620, 260], fill=(250, 250, 250))  # light window, dark text
    for i, t in enumerate(LIGHT):
        d.text((50, 60 + i * 50), t, font=f, fill=(25, 25, 25))
    d.rectangle([660, 300, 1250, 560], fill=(28, 30, 36))  # dark window, light text
    for i, t in enumerate(DARK):
        d.text((680, 330 + i * 50), t, font=fm, fill=(215, 220, 225))
    return img


@pytest.fixture(scope="module")
def reader():
    return ScreenReader()


def _match(expected, lines):
    got = [ln.text for ln in lines]
    return [max(difflib.SequenceMatcher(None, e.lower(), g.lower()).ratio() for g in got) if got else 0
            for e in expected]


def test_reads_light_and_dark_text(reader):
    rgb = np.array(render())
    lines = reader.read(rgb)
    scores = _match(LIGHT + DARK, lines)
    assert min(scores) >= 0.9, list(zip(LIGHT + DARK, scores, [ln.text for ln in lines]))
    for ln in lines:
        x0, y0, x1, y1 = ln.box
        assert 0 <= x0 < x1 <= rgb.shape[1] and 0 <= y0 < y1 <= rgb.shape[0] and 0 < ln.score <= 1
    dark = [ln for ln in lines if "pending" in ln.text.lower()][0]
    assert 660 <= dark.box[0] and 300 <= dark.box[1] and dark.box[3] <= 560


def test_reads_only_given_boxes(reader):
    rgb = np.array(render())
    lines = reader.read(rgb, boxes=[(660, 300, 1250, 560)])
    text = " ".join(ln.text for ln in lines).lower()
    assert "pending" in text and "quarterly" not in text
    assert all(ln.box[0] >= 650 for ln in lines)  # boxes are in frame coordinates


def test_change_detector_finds_the_changed_rectangle():
    cd = ChangeDetector(tile=64)
    a = np.array(render((1920, 1080)))
    assert cd.update(a) == [(0, 0, 1920, 1080)]  # first frame: everything
    assert cd.update(a.copy()) == []  # static screen: nothing
    b = a.copy()
    b[400:520, 700:1000] = (255, 255, 255)  # a 300x120 patch changes
    boxes = cd.update(b)
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert x0 <= 700 and y0 <= 400 and x1 >= 1000 and y1 >= 520  # covers the change
    assert x1 - x0 <= 300 + 128 and y1 - y0 <= 120 + 128  # and not much more (tile granularity)
    c = b.copy()
    c[10:40, 10:200] = 0  # two separate changes give two boxes
    c[900:1000, 1500:1800] = 0
    assert len(cd.update(c)) == 2


def test_change_detector_sees_a_small_text_edit():
    cd = ChangeDetector()
    img = render((1920, 1080))
    cd.update(np.array(img))
    d = ImageDraw.Draw(img)
    d.text((400, 160), "x", font=ImageFont.truetype(FONT, 16), fill=(0, 0, 0))  # one typed character
    boxes = cd.update(np.array(img))
    assert len(boxes) == 1 and boxes[0][0] <= 400 < boxes[0][2]


def test_region_read_with_prev_returns_only_changed_lines(reader):
    before = render()
    after = before.copy()
    d = ImageDraw.Draw(after)
    d.rectangle([40, 150, 610, 185], fill=(250, 250, 250))
    d.text((50, 160), "Meeting notes saved at 14:05", font=ImageFont.truetype(FONT, 20), fill=(25, 25, 25))
    a, b = np.array(before), np.array(after)
    cd = ChangeDetector()
    cd.update(a)
    boxes = cd.update(b)
    lines = reader.read(b, boxes, prev=a)
    texts = [ln.text for ln in lines]
    assert any("14:05" in t for t in texts), texts
    assert not any("revenue" in t.lower() or "settings" in t.lower() for t in texts), texts


def test_moved_window_is_read_from_the_cache(reader, monkeypatch):
    """Line crops are cached by their ink, not their exact box: the same text in a window that moved is not
    recognised again (only lines whose surroundings changed are)."""
    import vdbnb.ai.ocr as ocr

    def window_at(dx, dy):
        img = Image.new("RGB", (1280, 720), (70, 90, 120))
        d = ImageDraw.Draw(img)
        d.rectangle([30 + dx, 30 + dy, 620 + dx, 260 + dy], fill=(250, 250, 250))
        for i, t in enumerate(LIGHT):
            d.text((50 + dx, 60 + i * 50 + dy), t, font=ImageFont.truetype(FONT, 20), fill=(25, 25, 25))
        return np.array(img)

    r = ScreenReader()
    r.read(window_at(0, 0))
    counted = []
    real = ocr._recognize
    monkeypatch.setattr(ocr, "_recognize", lambda eng, crops: counted.append(len(crops)) or real(eng, crops))
    lines = r.read(window_at(37, 23))
    assert min(_match(LIGHT, lines)) >= 0.9, [ln.text for ln in lines]
    assert sum(counted) == 0, counted
    assert any(ln.box[0] >= 50 + 37 - 12 for ln in lines)  # boxes are where the text is now


def test_recognition_batches_group_similar_widths():
    from vdbnb.ai.ocr import _rec_batches

    rng = np.random.default_rng(0)
    crops = [np.zeros((int(h), int(w), 3), np.uint8) for h, w in zip(rng.integers(18, 40, 37),
                                                                     rng.integers(20, 900, 37))]
    batches = _rec_batches(crops, tol=1.15, most=4)
    assert sorted(i for b in batches for i in b) == list(range(len(crops)))
    ratio = [c.shape[1] / c.shape[0] for c in crops]
    for b in batches:
        assert 1 <= len(b) <= 4
        assert max(ratio[i] for i in b) <= 1.15 * min(ratio[i] for i in b) + 1e-9
    assert ratio[batches[0][-1]] == max(ratio)  # widest first, so parallel workers end together
