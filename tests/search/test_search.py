"""Hybrid search index: real MiniLM embedder; both backends: the embedded one (real SQLite/FTS5, real vector files:
binary codes + float16) and PostgreSQL (tsvector + GIN, pgvector halfvec + binary-quantised HNSW). No mocks."""
from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from vdbnb.ai.embed import get_embedder
from vdbnb.server.search import Doc, SearchIndex, fts_query, merge_overlapping

T0 = 1_760_000_000.0

TARGETS = {
    "budget": "the budget meeting moves to Thursday",
    "err": "ERR_CONNECTION_REFUSED while calling payments-api at db_pool.py:118",
    "hex": "Outlook: send failed with code 0x8004210B",
    "ident": "open invoice_reconciler_v2.py in the editor",
    "dog": "my dog ate the charging cable last night",
}
FILLER = [
    "let's review the pull request before the standup", "the login service is timing out again",
    "Priya will share the slide deck after lunch", "GET /api/v2/users/4411 200 OK 31ms",
    "can you double check the migration script", "churn went down four percent this quarter",
    "Slack | #eng | Tom: deploying now", "the cache layer is returning stale data",
    "who owns the onboarding guide for Acme", "TypeError: cannot read property 'id' of undefined",
    "the design review notes are in the wiki", "we need dark mode in the Phoenix release",
    "Grafana · search cluster · p99 latency 840 ms", "I'll merge the hotfix and ping Marcus",
    "the recommendation engine is really slow today", "Calendar: sprint planning · Monday at ten",
    "git commit -m \"clean up billing tests\"", "the kickoff with Globex went well",
    "WARN [auth] token refresh failed (retry 2/5)", "let's timebox the retro to thirty minutes",
]


def corpus() -> list[Doc]:
    """~200 segments over two sessions × (mic, screen) streams, plus the targets, in collection c1;
    a few in collection c2."""
    r = random.Random(3)
    docs = []
    for i in range(200):
        sess = f"ses{i % 2}"
        chan = "mic" if i % 4 < 2 else "screen"
        docs.append(Doc(f"f{i}", "c1", sess, f"{sess}-{chan}", f"{chan} stream", chan,
                        "transcript" if chan == "mic" else "ocr", None, T0 + i * 10, T0 + i * 10 + 8,
                        r.choice(FILLER) + (f" ({i})" if i % 3 else ""), {"n": i}))
    for j, (key, text) in enumerate(TARGETS.items()):
        chan = "mic" if key in ("budget", "dog") else "screen"
        docs.append(Doc(f"t-{key}", "c1", "ses1", f"ses1-{chan}", f"{chan} stream", chan,
                        "transcript" if chan == "mic" else "ocr", "idx-1" if key == "dog" else None,
                        T0 + 5000 + j * 10, T0 + 5000 + j * 10 + 8, text, {"target": key}))
    docs += [Doc(f"o{i}", "c2", "ses9", "ses9-mic", "mic", "mic", "transcript", None, T0 + i, T0 + i + 1,
                 "the budget meeting moves to Thursday", {}) for i in range(3)]
    return docs


class Opener:
    """Opens a search index of one backend: ``sqlite`` (a file) or ``postgresql`` (a database of its own)."""

    def __init__(self, kind: str, where):
        self.kind, self.where = kind, where

    def __call__(self, **kw):
        if self.kind == "sqlite":
            return SearchIndex(self.where, **kw)
        from vdbnb.server.search_pg import PgSearchIndex
        from vdbnb.server.store_pg import PostgresStore
        return PgSearchIndex(PostgresStore(self.where, max_size=8), close_store=True, **kw)


def fresh(kind: str, tmp_path: Path, name: str = "s") -> Opener:
    if kind == "sqlite":
        return Opener(kind, tmp_path / f"{name}.sqlite")
    from testkit.backend import engine
    return Opener(kind, engine("pg").new_database())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def built(kind, tmp_path_factory) -> Opener:
    opener = fresh(kind, tmp_path_factory.mktemp("search"), "search")
    with opener() as ix:
        ix.add(corpus())
    return opener


@pytest.fixture
def ix(built):
    with built() as ix:
        yield ix


# ------------------------------------------------------------------------------------------- embedder
def test_embedder_shape_norm_and_meaning():
    emb = get_embedder()
    assert get_embedder() is emb
    v = emb.embed(["the budget meeting moves to Thursday", "when is the finance review rescheduled",
                   "my dog ate the charging cable"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert emb.embed([]).shape == (0, 384)
    # batching and length-sorting do not change results
    assert np.allclose(emb.embed(["a", "the budget meeting moves to Thursday"], batch_size=1)[1], v[0], atol=1e-5)
    with pytest.raises(TypeError):
        emb.embed("not a list")


# ---------------------------------------------------------------------------------------------- ranking
@pytest.mark.parametrize("mode", ["hybrid", "semantic"])
@pytest.mark.parametrize("query,key", [
    ("when is the finance review rescheduled", "budget"),
    ("a pet chewed through the power cord", "dog"),
])
def test_paraphrase_finds_segment_first(ix, mode, query, key):
    hits = ix.search(query, "c1", mode=mode, limit=5)
    assert hits and hits[0].doc_id == f"t-{key}", [(h.doc_id, h.text) for h in hits]
    assert 0.0 <= hits[-1].score <= hits[0].score <= 1.0


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
@pytest.mark.parametrize("query,key", [
    ("ERR_CONNECTION_REFUSED", "err"), ("0x8004210B", "hex"), ("invoice_reconciler_v2.py", "ident"),
    ("db_pool.py:118", "err"), ("payments-api", "err"),
])
def test_keyword_finds_exact_screen_text(ix, mode, query, key):
    hits = ix.search(query, "c1", mode=mode, limit=5)
    assert hits[0].doc_id == f"t-{key}", [(h.doc_id, h.text) for h in hits]
    assert hits[0].channel_id == "screen" and hits[0].kind == "ocr"


def test_hit_fields_and_scores(ix):
    h = ix.search("ERR_CONNECTION_REFUSED", "c1", limit=3)[0]
    assert (h.rtstream_id, h.session_id, h.rtstream_name, h.index_id) == ("ses1-screen", "ses1", "screen stream", None)
    assert h.end > h.start >= T0 and h.metadata == {"target": "err"}
    assert h.score == pytest.approx(1.0)  # first in both legs
    assert all(x.score >= 0.9 for x in ix.search("ERR_CONNECTION_REFUSED", "c1", score_threshold=0.9))


# ---------------------------------------------------------------------------------------------- filters
@pytest.mark.parametrize("prefilter_max", [20_000, 0])  # exact over filtered rows / ANN + post-filter
@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_filters_apply_to_both_legs(built, prefilter_max, mode):
    with built(prefilter_max=prefilter_max) as ix:
        q = "the budget meeting moves to Thursday review"
        cases = [
            (dict(rtstream_id="ses0-mic"), lambda h: h.rtstream_id == "ses0-mic"),
            (dict(session_id="ses0"), lambda h: h.session_id == "ses0"),
            (dict(channel_ids=["screen"]), lambda h: h.channel_id == "screen"),
            (dict(kinds=["ocr"]), lambda h: h.kind == "ocr"),
            (dict(index_id="idx-1"), lambda h: h.index_id == "idx-1"),
            (dict(start=T0 + 100, end=T0 + 300), lambda h: h.end >= T0 + 100 and h.start <= T0 + 300),
        ]
        for kw, ok in cases:
            hits = ix.search(q, "c1", mode=mode, limit=20, **kw)
            assert all(ok(h) for h in hits), (kw, [(h.doc_id, h.rtstream_id, h.start) for h in hits])
            if mode != "keyword":
                assert hits, kw
        other = ix.search(q, "c2", mode=mode)
        assert other and {h.doc_id for h in other} <= {"o0", "o1", "o2"}
        assert ix.search(q, "c1", session_id="ses1", mode=mode)[0].doc_id == "t-budget"
        assert ix.search(q, "c1", kinds=["ocr"], channel_ids=["mic"], mode=mode) == []
        assert ix.search(q, "no-such-collection", mode=mode) == []


# -------------------------------------------------------------------------------------- hostile input
HOSTILE = ['"', '""', "'", "*", "^", "-", "+", ":", "()", "(", ")", "NEAR(a b)", "a OR", "AND", "NOT x",
           'text:"x', "col:val", '"unterminated', "a* b*", "{a b}", "\\", "\x00", "é", "中文 検索", "🙂🙂",
           "ﬁle", "ERR_' OR 1=1; --", "x" * 5000, " ".join(["w"] * 500), "\n\t\r", "NULL", "%_%", "[a-z]+",
           "SELECT * FROM segments", "-- comment", "a:b:c", "0x", "__", "...", "¿qué?", "Ünïcödé"]


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_hostile_queries_never_raise(ix, mode):
    for q in HOSTILE + ["", "   ", None]:
        hits = ix.search(q, "c1", mode=mode, limit=3)
        assert isinstance(hits, list)
    assert fts_query("NEAR NOT") == '"near" AND "not"'  # operators become plain words
    assert fts_query('" ^ * ()') == ""


def test_bad_arguments_say_what_to_do(ix):
    from vdbnb.errors import SearchError
    with pytest.raises(SearchError, match="hybrid"):
        ix.search("x", "c1", mode="fuzzy")
    with pytest.raises(SearchError, match="needs at least one"):
        ix.delete_where()


# ------------------------------------------------------------------------------- writes & persistence
def one(doc_id: str, text: str, **kw) -> Doc:
    base = dict(collection_id="c1", session_id="s", rtstream_id="r", rtstream_name="mic", channel_id="mic",
                kind="transcript", index_id=None, start=T0, end=T0 + 5, text=text, metadata={})
    return Doc(doc_id, **{**base, **kw})


def test_persistence_reopen_rebuild_and_replay(tmp_path):
    path = tmp_path / "s.sqlite"
    with SearchIndex(path) as ix:
        ix.add([one("a", "the espresso machine on the fourth floor is broken"),
                one("b", "quarterly revenue beat the forecast")])
    with SearchIndex(path) as ix:  # plain reopen
        assert len(ix) == 2 and ix.vectors.loaded
        assert ix.search("coffee maker not working", "c1", mode="semantic")[0].doc_id == "a"
    # code file corrupt (a partial row): both vector files rebuilt from SQLite
    path.with_name(path.name + ".ann.bits").write_bytes(b"garbage")
    with SearchIndex(path) as ix:
        assert not ix.vectors.loaded and len(ix.vectors) == 2
        assert ix.search("coffee maker not working", "c1", mode="semantic")[0].doc_id == "a"
    # a writer that never saved its graph (crash): the next open replays the rows from SQLite
    crashed = SearchIndex(path)
    crashed.add([one("c", "the parking garage will be repaved this weekend")])
    with SearchIndex(path) as ix:
        assert len(ix.vectors) == 3
        assert ix.search("car park resurfacing", "c1", mode="semantic")[0].doc_id == "c"


def test_idempotent_readd_and_delete(kind, tmp_path):
    with fresh(kind, tmp_path)() as ix:
        ix.add([one("a", "the espresso machine is broken"), one("b", "ERR_QUOTA_EXCEEDED on upload")])
        ix.add([one("a", "the espresso machine is broken")])
        assert len(ix) == 2 and (kind != "sqlite" or len(ix.vectors) == 2)
        ix.add([one("a", "snow day, everyone works from home", start=T0 + 60, end=T0 + 65)])
        assert len(ix) == 2 and (kind != "sqlite" or len(ix.vectors) == 2)
        assert ix.search("espresso", "c1", mode="keyword") == []
        h = ix.search("remote work because of winter weather", "c1", mode="semantic")[0]
        assert (h.doc_id, h.start) == ("a", T0 + 60)
        ix.add([one("d", "first"), one("d", "second version")])  # same id twice in a batch: last wins
        assert [h.text for h in ix.search("second version", "c1", mode="keyword")] == ["second version"]

        assert ix.delete(["b", "nope"]) == 1
        for mode in ("hybrid", "keyword", "semantic"):
            assert all(h.doc_id != "b" for h in ix.search("ERR_QUOTA_EXCEEDED", "c1", mode=mode))
        ix.add([one("x1", "alert on stream two", rtstream_id="r2", index_id="i9"),
                one("x2", "another alert on stream two", rtstream_id="r2", index_id="i9")])
        assert ix.delete_where(index_id="i9") == 2
        assert ix.search("alert on stream two", "c1", rtstream_id="r2") == []
        assert len(ix) == 2


def test_threads_add_and_search_concurrently(kind, tmp_path):
    errors: list[BaseException] = []
    with fresh(kind, tmp_path)() as ix:
        def writer(w: int):
            try:
                for b in range(5):
                    ix.add([one(f"w{w}-{b}-{i}", f"worker {w} batch {b} line {i} about the {FILLER[i]}")
                            for i in range(10)])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        def reader():
            try:
                for _ in range(20):
                    ix.search("login service timing out", "c1", limit=5)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)] + \
                  [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(ix) == 150 and (kind != "sqlite" or len(ix.vectors) == 150)


def test_merge_overlapping_hits(kind, tmp_path):
    with fresh(kind, tmp_path)() as ix:
        ix.add([one("p1", "the deploy failed because of the expired certificate", start=T0, end=T0 + 5),
                one("p2", "so the deploy failed again on the expired certificate", start=T0 + 4, end=T0 + 9),
                one("p3", "the expired certificate broke the deploy", start=T0 + 100, end=T0 + 105)])
        raw = ix.search("deploy expired certificate", "c1", limit=3)
        merged = ix.search("deploy expired certificate", "c1", limit=3, merge_adjacent=True)
        assert len(raw) == 3 and len(merged) == 2
        m = next(h for h in merged if h.start == T0)
        assert m.end == T0 + 9 and set(m.metadata["merged_doc_ids"]) == {"p1", "p2"}
        assert merge_overlapping([]) == []


def test_keyword_scan_is_bounded_newest_first(kind, tmp_path):
    with fresh(kind, tmp_path)(keyword_scan_max=3) as ix:
        ix.add([one(f"k{i}", f"alpha release note number {i}", start=T0 + i, end=T0 + i + 1) for i in range(8)])
        hits = ix.search("alpha release", "c1", mode="keyword", limit=8)
        assert {h.doc_id for h in hits} == {"k5", "k6", "k7"}
        assert len(ix.search("alpha release", "c1", mode="hybrid", limit=8)) == 8  # semantic leg sees all


def test_post_filter_widening_matches_the_exact_pre_filter(kind, tmp_path):
    """Many rows pass a filter (post-filter path: binary-code shortlist, exact ranking, then the filter in rank
    order, widening the shortlist when too few survive) — same hits as exact search among the passing rows."""
    rng = random.Random(5)
    docs = [one(f"d{i}", f"{rng.choice(FILLER)} number {i}", channel_id="screen" if i % 10 == 0 else "mic",
                kind="ocr" if i % 10 == 0 else "transcript") for i in range(400)]
    with fresh(kind, tmp_path, "post")(prefilter_max=5) as post, fresh(kind, tmp_path, "pre")() as pre:
        vecs = get_embedder().embed([d.text for d in docs])
        post.add(docs, vectors=vecs)
        pre.add(docs, vectors=vecs)
        # a shortlist of ~8 of 400 rows: a 10 % filter needs several widenings
        if kind == "sqlite":
            post.vectors.rescore = 8
        else:
            post.rescore = 8
        for q in ("login service timing out", "quarterly numbers", "coffee machine"):
            got = post.search(q, "c1", channel_ids=["screen"], mode="semantic", limit=5)
            want = pre.search(q, "c1", channel_ids=["screen"], mode="semantic", limit=5)
            assert [h.doc_id for h in got] == [h.doc_id for h in want] and len(got) == 5, q
            assert all(h.channel_id == "screen" for h in got)
