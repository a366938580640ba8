"""Redaction: the one step that every text and frame derived from a capture passes before anything else.

Everything vdbnb derives from what a person saw or said (OCR lines, window titles, transcripts, LLM answers,
notebook cell source and outputs, MCP replies) goes through a :class:`Redactor` before any engine (LLM, VLM,
embedder), the store, the search index, websockets, webhooks or a reply sees it::

    from vdbnb.redaction import get_redactor
    r = get_redactor()                            # process-wide; the server installs one with its own key
    red = r.text("export KEY=sk-live-...")         # Redacted(text="export KEY=[api_key redacted]", findings)
    red = r.text(transcript, spoken=True)          # speech: a cue ("my password is") redacts the rest
    value, findings = r.value({"outputs": [...]})  # every string inside dicts / lists / tuples
    scr = r.screen([(text, box), ...])             # OCR lines -> RedactedScreen(texts, boxes, findings)
    safe = r.mask(rgb, scr.boxes)                  # a copy with the secrets' boxes blacked out
    fr = r.frame(rgb)                              # OCR (local) + mask in one call: a screenshot safe to send

A :class:`SecretFinding` is what an alert may carry: the kind (``label``), where it was (``field``, the
``span`` of its mask in the redacted text, the ``box`` on a frame), a ``confidence`` and a ``fingerprint``:
a keyed hash (HMAC-SHA256 with this install's key) so that the same secret seen twice gives the same
fingerprint here, while nobody without the key can test guesses against it. Never a character of the secret.

What it finds is :func:`vdbnb.ai.secrets.scan`: provider key formats, ``password: …`` / ``token=…`` forms,
URL credentials, private key blocks, card numbers (Luhn), e-mail addresses; with ``spoken=True`` also
everything said after a cue (see docs/security.md for what spoken redaction can and cannot catch).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .ai.secrets import dangling_cue, scan

LABELS = ("api_key", "private_key", "password", "credit_card", "email")
MASK = "[{label} redacted]"
Box = tuple  # (x0, y0, x1, y1) in frame pixels
PAD = 3      # pixels a secret's box is grown by before it is blacked out (not into a line that stays)


@dataclass(frozen=True)
class SecretFinding:
    label: str                    # api_key | private_key | password | credit_card | email
    confidence: float
    fingerprint: str              # "fp-" + 16 hex: keyed hash of the secret (never its characters)
    field: str | None = None      # which text it was in: "text", "ocr_text", "window_title", "outputs.0.text"
    span: tuple[int, int] | None = None   # where its mask is in the redacted text
    box: Box | None = None        # where it was on the frame (union of its OCR lines' boxes)
    redacted: bool = True         # False for labels the redactor was told to keep (still reported)

    def place(self) -> dict:
        """The JSON-safe facts for an alert: label, field, span, box, fingerprint."""
        d: dict[str, Any] = {"detector": self.label, "fingerprint": self.fingerprint}
        if self.field:
            d["field"] = self.field
        if self.span:
            d["span"] = list(self.span)
        if self.box:
            d["box"] = [int(v) for v in self.box]
        return d


@dataclass
class Redacted:
    text: str
    findings: list[SecretFinding] = field(default_factory=list)
    dangling: str | None = None   # spoken: the text ends in a cue; the next utterance holds the secret


@dataclass
class RedactedScreen:
    texts: list[str]               # each OCR line's text, redacted
    boxes: list[Box]               # boxes to black out before a frame leaves (lines that held a secret, padded)
    findings: list[SecretFinding]


@dataclass
class RedactedFrame:
    image: Any                     # numpy array, same shape as the input, secrets' boxes black
    texts: list[str]
    boxes: list[Box]
    findings: list[SecretFinding]


_MASK_RE = re.compile(r"\[(?:" + "|".join(LABELS) + r") redacted\]")


def _fresh(text: str, found: list) -> list:
    """Findings that are not an earlier mask (``password: [password redacted]`` is already redacted)."""
    masks = [(m.start(), m.end()) for m in _MASK_RE.finditer(text)]
    if not masks:
        return found
    return [f for f in found if not any(a < f.end and f.start < b for a, b in masks)]


def _norm(secret: str) -> str:
    return re.sub(r"\s+", "", secret)


class Redactor:
    """Finds secrets and replaces them. ``key``: the fingerprint key (random per process when not given);
    ``keep``: labels reported but left in the text (e.g. ``("email",)``)."""

    def __init__(self, key: bytes | None = None, keep: Iterable[str] = (), mask: str = MASK):
        self._key = key or os.urandom(32)
        self.keep = frozenset(keep)
        self.mask_format = mask

    # ------------------------------------------------------------------------------------------ text
    def fingerprint(self, secret: str) -> str:
        return "fp-" + hmac.new(self._key, _norm(secret).encode(), hashlib.sha256).hexdigest()[:16]

    def text(self, s: str | None, field: str | None = None, spoken: bool = False,
             after_cue: str | None = None) -> Redacted:
        """``s`` with every secret replaced by ``[label redacted]``. ``spoken``: a transcript (cues count);
        ``after_cue``: the previous utterance ended in a cue with this label, so all of ``s`` is the secret."""
        if not s:
            return Redacted(s or "")
        if after_cue and s.strip(" .!?,;:"):
            found = [(after_cue, 0.8, 0, len(s.rstrip(" .!?,;:")))]
        else:
            found = [(f.label, f.confidence, f.start, f.end) for f in _fresh(s, scan(s, spoken=spoken))]
        out, findings, shift = s, [], 0
        for label, conf, a, b in found:  # in order of position
            secret = s[a:b]
            keep = label in self.keep
            if keep:
                findings.append(SecretFinding(label, float(conf), self.fingerprint(secret), field,
                                              (a + shift, b + shift), None, False))
                continue
            m = self.mask_format.format(label=label)
            out = out[:a + shift] + m + out[b + shift:]
            findings.append(SecretFinding(label, float(conf), self.fingerprint(secret), field,
                                          (a + shift, a + shift + len(m)), None, True))
            shift += len(m) - (b - a)
        return Redacted(out, findings, dangling_cue(s) if spoken else None)

    def value(self, v: Any, field: str = "") -> tuple[Any, list[SecretFinding]]:
        """``v`` (str, or dicts/lists/tuples of them, e.g. a cell's outputs) with every string redacted."""
        if isinstance(v, str):
            r = self.text(v, field or None)
            return r.text, r.findings
        if isinstance(v, dict):
            out, fs = {}, []
            for k, x in v.items():
                out[k], f = self.value(x, f"{field}.{k}" if field else str(k))
                fs += f
            return out, fs
        if isinstance(v, (list, tuple)):
            items, fs = [], []
            for i, x in enumerate(v):
                y, f = self.value(x, f"{field}.{i}" if field else str(i))
                items.append(y)
                fs += f
            return (tuple(items) if isinstance(v, tuple) else items), fs
        return v, []

    # ------------------------------------------------------------------------------------------ screen
    def screen(self, lines: Sequence[tuple[str, Box]], field: str = "ocr_text") -> RedactedScreen:
        """OCR lines (text, box) read in order: the lines are scanned together (a cue on one line, its value
        on the next), each line's text is redacted, and the boxes of lines that held a secret are returned."""
        starts, pos = [], 0
        for t, _ in lines:
            starts.append(pos)
            pos += len(t) + 1
        joined = "\n".join(t for t, _ in lines)
        texts = [t for t, _ in lines]
        findings = []
        cuts: dict[int, list[tuple[int, int, str]]] = {}
        hidden: set[int] = set()
        for f in _fresh(joined, scan(joined)):
            hit = [i for i, (t, _) in enumerate(lines) if starts[i] < f.end and f.start < starts[i] + len(t)]
            if not hit:
                continue
            box = _union([lines[i][1] for i in hit])
            keep = f.label in self.keep
            findings.append(SecretFinding(f.label, float(f.confidence), self.fingerprint(f.match), field,
                                          None, box, not keep))
            if keep:
                continue
            for i in hit:
                a, b = max(f.start, starts[i]) - starts[i], min(f.end, starts[i] + len(lines[i][0])) - starts[i]
                cuts.setdefault(i, []).append((a, b, f.label))
                if i not in hidden:
                    hidden.add(i)
        kept = [tuple(lines[i][1]) for i in range(len(lines)) if i not in hidden]
        boxes = [_padded(tuple(lines[i][1]), kept) for i in sorted(hidden)]
        for i, cs in cuts.items():
            t = texts[i]
            for a, b, label in sorted(cs, reverse=True):
                t = t[:a] + self.mask_format.format(label=label) + t[b:]
            texts[i] = t
        return RedactedScreen(texts, boxes, findings)

    @staticmethod
    def mask(rgb, boxes: Iterable[Box], pad: int = 0):
        """A copy of ``rgb`` (H×W×C array) with each box (x0, y0, x1, y1) filled black (grown by ``pad``;
        :meth:`screen`'s boxes are padded already)."""
        import numpy as np

        img = np.array(rgb, copy=True)
        h, w = img.shape[:2]
        for x0, y0, x1, y1 in boxes:
            x0, y0 = max(0, int(x0) - pad), max(0, int(y0) - pad)
            x1, y1 = min(w, int(x1) + pad), min(h, int(y1) + pad)
            if x1 > x0 and y1 > y0:
                img[y0:y1, x0:x1] = 0
        return img

    def frame(self, rgb, reader=None) -> RedactedFrame:
        """OCR the whole frame (locally, vdbnb.ai.ocr) and black out every line that holds a secret."""
        if reader is None:
            reader = screen_reader()
        lines = reader.read(rgb)
        scr = self.screen([(ln.text, tuple(ln.box)) for ln in lines])
        return RedactedFrame(self.mask(rgb, scr.boxes), scr.texts, scr.boxes, scr.findings)


def _padded(box: Box, kept: list[Box], pad: int = PAD) -> Box:
    """A secret line's box grown by ``pad``, but not into a line that stays. OCR boxes are the text plus a
    margin, so on a terminal the boxes of two adjacent lines overlap (a third of their height) and the secret
    line's box reaches the descenders of the line above: it is cut at the midpoint between the two lines'
    centres, never closer to its own centre than a quarter of its height (the secret's ink is always
    covered). A line beside it on the same row keeps its box."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, cy = y1 - y0, (y0 + y1) / 2
    bx0, by0, bx1, by1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    for kx0, ky0, kx1, ky1 in kept:
        if kx1 <= bx0 or bx1 <= kx0 or ky1 <= by0 or by1 <= ky0:
            continue
        kc = (ky0 + ky1) / 2
        if kc < y0:                                   # a line above
            by0 = max(by0, min(int((kc + cy) / 2 + 0.5), y0 + h // 4))
        elif kc > y1:                                 # a line below
            by1 = min(by1, max(int((kc + cy) / 2), y1 - h // 4))
        elif kx1 <= x0:                               # beside it, on the left
            bx0 = max(bx0, kx1)
        elif kx0 >= x1:                               # on the right
            bx1 = min(bx1, kx0)
    return (max(0, bx0), max(0, by0), bx1, by1)


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


SPOKEN_SECRETS = ("password", "api_key")
CONTINUE_S = 1.5      # a short final this soon after one that ended in a spoken secret is more of it
CONTINUE_WORDS = 3


class SpokenSecrets:
    """Redaction across one stream's utterances (speech-to-text cuts where the speaker pauses, not where a
    secret ends). A cue that ends a final ("... my password is") makes the next utterance the secret; and a
    final that ends in a spoken secret ("my password is tiger dragon") may have lost its last word to a cut
    ("mango."), so a short final (<= CONTINUE_WORDS words) starting within CONTINUE_S of it is taken as more of
    the same secret. This fails closed: a short reply said right after a spoken password is masked as well."""

    def __init__(self, redactor: "Redactor"):
        self.redactor = redactor
        self.cue: str | None = None                  # the previous final ended in a cue with this label
        self.tail: tuple[str, float] | None = None   # (label, end) of a final that ended in a spoken secret

    def _after_cue(self, text: str, start: float | None) -> str | None:
        if self.cue:
            return self.cue
        if self.tail and start is not None and start - self.tail[1] <= CONTINUE_S \
                and len(text.split()) <= CONTINUE_WORDS:
            return self.tail[0]
        return None

    def redact(self, text: str, start: float | None, end: float | None, is_final: bool,
               field: str = "text") -> Redacted:
        """``text`` of an utterance (interim or final) redacted; a final moves the state on."""
        red = self.redactor.text(text, field, spoken=True, after_cue=self._after_cue(text, start))
        if is_final:
            self.cue = red.dangling
            label = _trailing_secret(red)
            self.tail = (label, end if end is not None else (start or 0.0)) if label else None
        return red


def _trailing_secret(red: Redacted) -> str | None:
    """The label of a spoken secret that runs to the end of ``red.text`` (nothing but punctuation after it)."""
    for f in red.findings:
        if f.redacted and f.label in SPOKEN_SECRETS and f.span and not red.text[f.span[1]:].strip(" .!?,;:\"'`"):
            return f.label
    return None


_READER = None
_READER_LOCK = threading.Lock()


def screen_reader():
    """The process's one local OCR reader (vdbnb.ai.ocr.ScreenReader; its line cache, keyed by ink, makes a
    repeated look at the same screen cheap)."""
    global _READER
    with _READER_LOCK:
        if _READER is None:
            from .ai.ocr import ScreenReader
            _READER = ScreenReader()
        return _READER


_REDACTOR: Redactor | None = None


def get_redactor() -> Redactor:
    """The process-wide redactor (random fingerprint key unless one was installed with set_redactor)."""
    global _REDACTOR
    if _REDACTOR is None:
        _REDACTOR = Redactor()
    return _REDACTOR


def set_redactor(r: Redactor) -> Redactor:
    global _REDACTOR
    _REDACTOR = r
    return r


def redact_text(s: str | None, spoken: bool = False) -> str:
    """Shorthand: ``s`` redacted by the process-wide redactor."""
    return get_redactor().text(s, spoken=spoken).text
