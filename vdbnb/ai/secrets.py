"""Find secrets in screen text and transcripts: API keys, passwords, card numbers, e-mail addresses.

Tolerates the forms OCR and speech-to-text produce: spaces inside keys and card numbers, and e-mails spoken as
"jane dot doe at example dot com".
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass


# kinds of finding that are removed from what is stored (the others, e-mail addresses, are flagged only)
REDACT_LABELS = frozenset({"api_key", "password", "credit_card", "private_key", "token"})


@dataclass
class Finding:
    label: str  # api_key | private_key | password | credit_card | email
    confidence: float
    match: str
    start: int
    end: int


# Provider key formats: (label, pattern, confidence). Spaces/hyphens that OCR inserts are allowed by _spaced().
_KEY_PATTERNS: list[tuple[str, str, float]] = [
    ("api_key", r"sk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_\-]{20,}", 0.95),
    ("api_key", r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", 0.97),
    ("api_key", r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}", 0.97),
    ("api_key", r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}", 0.98),
    ("api_key", r"github_pat_[A-Za-z0-9_]{40,}", 0.98),
    ("api_key", r"xox[abposr]-[A-Za-z0-9\-]{10,}", 0.96),
    ("api_key", r"AIza[A-Za-z0-9_\-]{35}", 0.95),
    ("api_key", r"glpat-[A-Za-z0-9_\-]{20}", 0.97),
    ("api_key", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", 0.9),
    # the whole block: header, body, footer (or, when the footer is not there, everything after the header)
    ("private_key", r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP |ENCRYPTED )?PRIVATE KEY-----(?:[\s\S]*?-----END "
                    r"(?:RSA |EC |OPENSSH |DSA |PGP |ENCRYPTED )?PRIVATE KEY-----|[\s\S]*)", 0.99),
    ("api_key", r"st-[A-Za-z0-9_\-]{20,}", 0.8),
]

_KEY_RES = [(label, re.compile(r"(?<![A-Za-z0-9_])" + pat), conf) for label, pat, conf in _KEY_PATTERNS]

# OCR sometimes splits a long key with single spaces: "ghp_abcd efgh...". Join runs of such chunks.
_SPACED_RE = re.compile(r"(?<![A-Za-z0-9_\-])((?:sk-|ghp_|gho_|xox[abposr]-|AKIA|AIza|glpat-|github_pat_)"
                        r"[A-Za-z0-9_\-]*(?: [A-Za-z0-9_\-]{3,}){1,8})")

_SECRET_WORD = r"(?:api[_\- ]?key|apikey|secret(?:[_\- ]?key)?|access[_\- ]?key|auth[_\- ]?token|token|" \
               r"bearer|client[_\- ]?secret|private[_\- ]?key|credentials?)"
_PASSWORD_WORD = r"(?:password|passwd|pwd|pass ?phrase|passcode|pin code|pw)"
_ASSIGN = r"\s*(?:[:=]|=>|\bis\b|\bwas\b|\bequals\b)\s*[\"'`]?"

_GENERIC_RE = re.compile(rf"(?i)(?<![a-z]){_SECRET_WORD}(?![a-z]){_ASSIGN}([A-Za-z0-9_\-+/=.]{{12,}})")
_BEARER_RE = re.compile(r"(?i)\bAuthorization:\s*Bearer\s+([A-Za-z0-9_\-+/=.]{16,})")
_PASSWORD_RE = re.compile(rf"(?i)(?<![a-z]){_PASSWORD_WORD}(?![a-z]){_ASSIGN}(\S{{4,}})")
_URL_CRED_RE = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:([^\s@/]{3,})@[^\s/]+")

_EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b")
_SPOKEN_EMAIL_RE = re.compile(
    r"(?i)\b([a-z0-9]+(?:\s+(?:dot|underscore|dash|hyphen)\s+[a-z0-9]+)*)\s+at\s+"
    r"([a-z0-9\-]+(?:\s+dot\s+[a-z0-9\-]+)*\s+dot\s+(?:com|org|net|io|ai|dev|edu|gov|co|uk|de|fr|app))\b")
_OCR_EMAIL_RE = re.compile(
    r"(?<![\w.+-])([A-Za-z0-9._%+\-]+)\s*(?:@|\(at\)|\[at\])\s*([A-Za-z0-9\-]+(?:\s*(?:\.|\(dot\)|\[dot\])\s*"
    r"[A-Za-z0-9\-]+)+)")

_CARD_RE = re.compile(r"(?<![\d.])(?:\d[ \-]?){12,18}\d(?![\d.])")

_PLACEHOLDERS = {"password", "passwd", "xxxx", "xxxxxxxx", "********", "changeme", "<password>", "none", "null",
                 "redacted", "hidden", "example", "required", "optional", "incorrect", "wrong", "reset", "forgot",
                 "field", "please", "must", "should", "will", "expired", "updated", "changed", "here",
                 "[redacted]"}  # what redaction leaves behind is not a secret


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _looks_random(tok: str) -> bool:
    """A token that looks machine-made: long, mixed character classes, high entropy."""
    classes = sum(bool(re.search(p, tok)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[_\-+/=.]"))
    if len(tok) < 12 or classes < 2:
        return False
    if re.fullmatch(r"[a-z]+(?:[_\-.][a-z]+)*", tok):  # identifiers like my_api_key_name
        return False
    return _entropy(tok) >= 3.0


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        alt = not alt
    return total % 10 == 0


def _card_brand_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    if d[:2] in ("34", "37"):
        return n == 15
    if 51 <= int(d[:2]) <= 55 or 2221 <= int(d[:4]) <= 2720:
        return n == 16
    if d.startswith(("6011", "65")) or 644 <= int(d[:3]) <= 649:
        return n in (16, 19)
    if 3528 <= int(d[:4]) <= 3589:
        return n in (16, 19)
    if d[:2] in ("36", "38", "39") or 300 <= int(d[:3]) <= 305:
        return n in (14, 16, 19)
    return False


# Speech: speech-to-text spells a spoken secret as it hears it ("marble falcon quiver 42", "S K dash ..."),
# so its shape is no evidence. A cue ("my password is", "the API key is") is: everything said after it, to
# the end of the utterance, is taken as the secret.
_SPOKEN_CUE_RE = re.compile(
    rf"(?i)(?<![a-z])(?:{_PASSWORD_WORD}|pass word|pin|{_SECRET_WORD})(?![a-z])\s*(?:[:=]|['\u2019]s\b|\bis\b|"
    r"\bwas\b|\bequals\b)[\s,:;\"'`]*")
_PASSWORD_CUE_RE = re.compile(rf"(?i)^(?:{_PASSWORD_WORD}|pass word|pin)")


def _spoken(text: str) -> list[Finding]:
    out = []
    for m in _SPOKEN_CUE_RE.finditer(text):
        value = text[m.end():].rstrip(" .!?,;:\"'`")
        if not value or value.lower() in _PLACEHOLDERS:
            continue
        label = "password" if _PASSWORD_CUE_RE.match(m.group(0).lstrip()) else "api_key"
        out.append(Finding(label, 0.85, value, m.end(), m.end() + len(value)))
    return out


def dangling_cue(text: str) -> str | None:
    """The label of a cue that ends ``text`` with nothing after it ("... and my password is"): the secret
    is then in the next utterance. None when the text does not end in a cue."""
    last = None
    for m in _SPOKEN_CUE_RE.finditer(text):
        last = m
    if last is None or text[last.end():].strip(" .!?,;:\"'`"):
        return None
    return "password" if _PASSWORD_CUE_RE.match(last.group(0).lstrip()) else "api_key"


def scan(text: str, spoken: bool = False) -> list[Finding]:
    """All secrets found in ``text``, sorted by position; overlapping findings keep the most confident.
    ``spoken``: the text is a transcript, where a cue ("my password is") marks the rest of the utterance."""
    out: list[Finding] = _spoken(text) if spoken else []
    for label, rx, conf in _KEY_RES:
        for m in rx.finditer(text):
            tok = m.group(0)
            if tok[:3] in ("sk-", "st-") and not _looks_random(tok.split("-", 1)[1]):
                continue
            out.append(Finding(label, conf, tok, m.start(), m.end()))
    for m in _SPACED_RE.finditer(text):
        joined = m.group(1).replace(" ", "")
        for label, rx, conf in _KEY_RES:
            if rx.fullmatch(joined) or rx.match(joined):
                out.append(Finding(label, round(conf * 0.85, 2), m.group(1), m.start(1), m.end(1)))
                break
    for rx, label in ((_GENERIC_RE, "api_key"), (_BEARER_RE, "api_key")):
        for m in rx.finditer(text):
            tok = m.group(1).rstrip(".,;\"'`")
            if _looks_random(tok):
                conf = 0.9 if _entropy(tok) >= 3.5 else 0.75
                out.append(Finding(label, conf, tok, m.start(1), m.start(1) + len(tok)))
    for m in _PASSWORD_RE.finditer(text):
        tok = m.group(1).rstrip(".,;\"'`)")
        if len(tok) < 4 or tok.lower() in _PLACEHOLDERS or set(tok) <= {"*", "•", "●", "x", "X", "."}:
            continue
        mixed = bool(re.search(r"\d", tok)) + bool(re.search(r"[A-Za-z]", tok)) + bool(re.search(r"[^\w]", tok))
        conf = 0.9 if mixed >= 2 else 0.6
        out.append(Finding("password", conf, tok, m.start(1), m.start(1) + len(tok)))
    for m in _URL_CRED_RE.finditer(text):
        out.append(Finding("password", 0.97, m.group(1), m.start(1), m.end(1)))
    for m in _CARD_RE.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) >= 2:
            conf = 0.95 if _card_brand_ok(digits) else 0.6
            out.append(Finding("credit_card", conf, raw, m.start(), m.end()))
    for m in _EMAIL_RE.finditer(text):
        out.append(Finding("email", 0.95, m.group(0), m.start(), m.end()))
    for m in _OCR_EMAIL_RE.finditer(text):
        if "@" in m.group(0) and " " not in m.group(0) and "(" not in m.group(0) and "[" not in m.group(0):
            continue  # the plain form is found above
        domain = re.sub(r"\s*(?:\(dot\)|\[dot\])\s*|\s*\.\s*", ".", m.group(2))
        if re.search(r"\.[A-Za-z]{2,24}$", domain):
            out.append(Finding("email", 0.8, m.group(0), m.start(), m.end()))
    for m in _SPOKEN_EMAIL_RE.finditer(text):
        out.append(Finding("email", 0.7, m.group(0), m.start(), m.end()))
    return _resolve(out)


def _resolve(found: list[Finding]) -> list[Finding]:
    """Drop findings overlapped by a more confident (or longer) one."""
    found.sort(key=lambda f: (-f.confidence, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in found:
        if any(f.start < k.end and k.start < f.end for k in kept):
            continue
        kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: list[Finding] | None = None, mask: str = "[{label}]") -> str:
    """``text`` with every finding replaced by ``mask`` (``{label}`` is filled in)."""
    findings = scan(text) if findings is None else findings
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        text = text[: f.start] + mask.format(label=f.label) + text[f.end:]
    return text
