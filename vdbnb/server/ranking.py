"""What both search backends share (search.py: embedded SQLite; search_pg.py: PostgreSQL): the segment and hit
records, the filters as SQL, the sanitised keyword query, and the rank fusion with its scores (see search.py's
docstring for modes and scores)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

RRF_K = 60
PREFILTER_MAX = 10_000  # filtered candidate sets up to this size are searched exactly
KEYWORD_SCAN_MAX = 2_000  # keyword matches scored per query (newest first)
MODES = ("hybrid", "keyword", "semantic")
_COLS = ("doc_id", "collection_id", "session_id", "rtstream_id", "rtstream_name", "channel_id", "kind",
         "index_id", "start", "end", "text", "metadata")

STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i if in into is it its me "
    "my of on or our so that the their them then there these they this to was we were what when where which "
    "who whom why will with would you your".split())


@dataclass
class Doc:
    """One time-windowed segment: a transcript line, an audio/visual index result, OCR text, ..."""
    doc_id: str
    collection_id: str
    session_id: str | None
    rtstream_id: str | None
    rtstream_name: str | None
    channel_id: str | None  # "mic" | "screen" | "system_audio"
    kind: str  # "transcript" | "audio_index" | "visual_index" | "ocr" | ...
    index_id: str | None
    start: float  # epoch seconds
    end: float
    text: str
    metadata: dict = field(default_factory=dict)


@dataclass
class Hit:
    doc_id: str
    score: float  # 0..1, higher is better
    start: float
    end: float
    text: str
    rtstream_id: str | None
    rtstream_name: str | None
    session_id: str | None
    channel_id: str | None
    kind: str
    index_id: str | None
    metadata: dict


def fts_query(text: str, op: str = "AND", max_terms: int = 32) -> str:
    """A safe FTS5 query from arbitrary user text: each whitespace-separated chunk becomes a quoted phrase
    of its word parts (so ``ERR_CONN_RESET`` or ``0x8004210B`` match as written); stopwords are dropped
    when other words remain. Returns "" when nothing searchable is left."""
    return f" {op} ".join('"' + " ".join(p) + '"' for p in fts_words(text, max_terms))


def fuse(semantic: list[tuple[int, float]], keyword: list[int], mode: str,
         score_threshold: float | None = None) -> tuple[list[int], dict[int, float]]:
    """Rank fusion of the two legs (every search backend): (row ids best first, their 0..1 scores).
    ``semantic`` is (id, cosine) best first, ``keyword`` ids best first; see the module docstring for scores."""
    scores: dict[int, float] = {}
    cosine: dict[int, float] = {}
    for r, (i, s) in enumerate(semantic):
        scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + r + 1)
        cosine[i] = s
    for r, i in enumerate(keyword):
        scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + r + 1)
    if mode == "semantic":
        final = {i: max(0.0, s) for i, s in cosine.items()}
    else:
        best = (1.0 if mode == "keyword" else 2.0) / (RRF_K + 1)
        final = {i: s / best for i, s in scores.items()}
    order = sorted(final, key=lambda i: (-final[i], -cosine.get(i, -1.0)))
    if score_threshold is not None:
        order = [i for i in order if final[i] >= score_threshold]
    return order, final


def fts_words(text: str, max_terms: int = 32) -> list[list[str]]:
    """The searchable phrases of arbitrary user text, each a list of its lowercase word parts (see fts_query)."""
    phrases = []
    for chunk in text.split():
        parts = re.findall(r"[^\W_]+", chunk)
        if parts:
            phrases.append(" ".join(parts).lower())
    content = [p for p in phrases if p not in STOPWORDS] or phrases
    return [p.split() for p in list(dict.fromkeys(content))[:max_terms]]


def merge_overlapping(hits: list[Hit], gap: float = 0.0) -> list[Hit]:
    """Merge hits of the same stream and kind whose time windows overlap (or are ``gap`` s apart) into the
    best-scoring one of them: its window grows to cover them all and their texts are joined in time order."""
    merged: list[Hit] = []
    groups: list[list[Hit]] = []
    for h in hits:  # best first
        for g, m in zip(groups, merged):
            if (m.rtstream_id, m.kind) == (h.rtstream_id, h.kind) and h.start <= m.end + gap and \
                    h.end >= m.start - gap:
                g.append(h)
                m.start, m.end = min(m.start, h.start), max(m.end, h.end)
                break
        else:
            groups.append([h])
            merged.append(Hit(**{**h.__dict__, "metadata": dict(h.metadata)}))
    for g, m in zip(groups, merged):
        if len(g) > 1:
            m.text = " ".join(x.text for x in sorted(g, key=lambda x: x.start))
            m.metadata["merged_doc_ids"] = [x.doc_id for x in g]
    return merged


def _q(col: str) -> str:
    return f'"{col}"'


def _where(collection_id=None, session_id=None, rtstream_id=None, index_id=None, kinds=None,
           channel_ids=None, start=None, end=None, max_duration=None) -> tuple[str, list]:
    """SQL condition over ``segments`` (aliased or not: columns are unqualified-safe) and its arguments."""
    conds, args = [], []
    for col, val in (("collection_id", collection_id), ("session_id", session_id),
                     ("rtstream_id", rtstream_id), ("index_id", index_id)):
        if val is not None:
            conds.append(f"{col} = ?")
            args.append(val)
    for col, vals in (("kind", kinds), ("channel_id", channel_ids)):
        if vals is not None:
            vals = [vals] if isinstance(vals, str) else list(vals)
            conds.append(f"{col} IN ({','.join('?' * len(vals))})" if vals else "1=0")
            args += vals
    if start is not None:
        conds.append('"end" >= ?')
        args.append(float(start))
        if max_duration is not None:  # same condition, but one an index on `start` can use
            conds.append("start >= ?")
            args.append(float(start) - max_duration)
    if end is not None:
        conds.append("start <= ?")
        args.append(float(end))
    return " AND ".join(conds) or "1=1", args
