"""Benchmark the hybrid search index at the scale of ~1,000 hours of capture (~1 M segments).

    python bench/bench_search.py                 # 1,000,000 segments (default)
    python bench/bench_search.py --n 100000      # quicker
    python bench/bench_search.py --compare       # also compare vector back-ends (numpy/usearch/hnswlib/faiss/sqlite-vec;
                                                 #   pip install 'vdbnb[bench]' for the optional ones)
    python bench/bench_search.py --out DIR --keep             # keep the index, then re-measure it with
    python bench/bench_search.py --out DIR --reuse --show-misses   # ... and list the labelled misses
    python bench/bench_search.py --backend postgresql [--database-url URL]   # the same on PostgreSQL
                                                 #   (pgvector; without a URL: a PostgreSQL it starts itself)
    python bench/bench_search.py --n 100000 --backend sqlite|postgresql   # recall by set and kind, cheaply

What it does
- Generates plausible speech-transcript and on-screen (OCR) sentences from templates and vocabularies, then
  spreads them over sessions × streams (mic, system_audio, screen) with realistic timestamps.
- Embedding 1 M texts with MiniLM on 2 cores would take ~45 min, so it embeds a pool of distinct sentences
  (``--distinct``, default 60,000, ~2–3 min) once, caches the vectors under ``--out``, and reuses a sentence's
  vector wherever that sentence recurs at another time or on another stream (real transcripts repeat
  themselves too). Planted segments (the labelled answers) are unique texts, embedded for real.
- Two labelled query sets (bench/search_sets.py), both planted in the same index: DEV (tune ranking on it) and
  HELDOUT (only reported on). Kinds: paraphrase, split (the answer said over two consecutive segments of one
  stream; a hit on either counts), keyword (identifiers, error codes, file names), mixed (an identifier plus
  words not in the segment). Reports recall@5 (a planted answer in the top 5) per set and kind for hybrid,
  semantic and keyword search, search p50/p95 per mode (also with broad filters, over DEV), the vector layer's
  recall@5 against exact search, where exact cosine over everything ranks each labelled answer (the ceiling for
  any index over these embeddings), and the embedder's sentences/s, beside the goals.
Everything it writes goes under ``--out`` (default: a fresh temp dir, removed at the end unless ``--keep``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.search_sets import Item, labelled  # noqa: E402

GOAL_P95_MS = 50.0
GOAL_RECALL = 0.9

# ----------------------------------------------------------------------------------------------- vocabularies
PEOPLE = ["Alice", "Bob", "Priya", "Marcus", "Chen", "Fatima", "Diego", "Olga", "Sam", "Kenji", "Leila", "Tom",
          "Grace", "Ravi", "Nina", "Jonas", "Amara", "Lucas", "Mei", "Omar"]
PROJECTS = ["Atlas", "Phoenix", "Orion", "Nimbus", "Falcon", "Juniper", "Helix", "Quartz", "Beacon", "Summit",
            "Cobalt", "Aurora", "Mosaic", "Vertex", "Harbor"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Friday", "next week", "tomorrow", "the end of the month",
        "the weekend", "the first of the month", "after the holidays"]
TIMES = ["at nine", "at ten thirty", "after lunch", "at two", "at four", "first thing in the morning",
         "in the afternoon", "late in the evening"]
MEETINGS = ["standup", "design review", "sprint planning", "retro", "one on one", "all hands", "demo",
            "customer call", "kickoff", "sync with marketing", "hiring panel", "roadmap session"]
ARTIFACTS = ["pull request", "slide deck", "spec", "mockups", "release notes", "migration script", "dashboard",
             "test plan", "contract draft", "onboarding guide", "incident report", "pricing page",
             "API docs", "data pipeline", "landing page", "quarterly report"]
COMPONENTS = ["login service", "payment gateway", "search cluster", "mobile app", "checkout flow",
              "recommendation engine", "notification service", "build pipeline", "cache layer",
              "analytics job", "auth proxy", "video encoder", "web socket server", "admin panel",
              "export worker", "database replica"]
PROBLEMS = ["timing out", "running out of memory", "dropping requests", "really slow", "flaky",
            "throwing errors", "stuck in a restart loop", "returning stale data", "leaking connections",
            "misconfigured", "down for some users", "double charging people"]
CAUSES = ["last deploy", "config change", "expired certificate", "missing index", "race condition",
          "network partition", "noisy neighbour", "bad feature flag", "schema migration", "DNS issue",
          "rate limiter", "disk filling up"]
ACTIONS = ["review", "update", "roll back", "finish", "double check", "rewrite", "ship", "test", "merge",
           "document", "clean up", "benchmark", "split up", "share", "archive"]
METRICS = ["signup rate", "churn", "latency", "conversion", "error rate", "revenue", "active users",
           "page load time", "support tickets", "retention", "cloud spend", "NPS"]
DIRECTIONS = ["up", "down"]
PERIODS = ["this week", "since last month", "over the quarter", "after the launch", "year over year",
           "since Tuesday"]
CUSTOMERS = ["Acme", "Globex", "Initech", "Umbrella", "Stark Industries", "Wayne Enterprises", "Hooli",
             "Soylent", "Vandelay", "Wonka"]
FEATURES = ["single sign on", "dark mode", "CSV export", "audit logs", "offline sync", "two factor login",
            "bulk editing", "custom roles", "usage based billing", "a public API"]
FILLERS = ["honestly", "I mean", "so", "basically", "okay", "right", "you know", "actually", "anyway"]
APPS = ["Visual Studio Code", "Google Chrome", "Slack", "Terminal", "Figma", "Notion", "Jira", "Excel",
        "Zoom", "Grafana", "Postman", "Outlook"]
EXCEPTIONS = ["TypeError", "ValueError", "KeyError", "NullPointerException", "TimeoutError",
              "ConnectionResetError", "IndexError", "PermissionError", "AssertionError", "RuntimeError"]
MESSAGES = ["cannot read property 'id' of undefined", "connection refused", "list index out of range",
            "permission denied", "unexpected end of JSON input", "invalid token", "deadline exceeded",
            "no such file or directory", "too many open files", "object has no attribute 'items'"]
MODULES = ["billing", "users", "orders", "auth", "search", "reports", "sync", "upload", "cart", "inbox",
           "metrics", "scheduler", "profile", "invoices"]
RESOURCES = ["users", "orders", "invoices", "sessions", "projects", "files", "teams", "events", "tokens"]
HTTP = ["200 OK", "201 Created", "204 No Content", "400 Bad Request", "401 Unauthorized", "404 Not Found",
        "500 Internal Server Error", "502 Bad Gateway", "503 Service Unavailable"]
CHANNELS = ["general", "eng", "incidents", "design", "sales", "random", "releases", "support"]

SPEECH = [
    "{person} said the {project} {artifact} should be ready by {day}",
    "can we move the {meeting} to {day} {time}",
    "I think the {component} is {problem} because of the {cause}",
    "let's {action} the {artifact} before the {meeting}",
    "{person}, could you {action} the {artifact} for {project}",
    "the {metric} went {direction} {n} percent {period}",
    "{filler}, {customer} wants {feature} in the {project} release",
    "{filler} the {component} logs show it was {problem} {period}",
    "we should {action} the {component} before {day}",
    "who owns the {artifact} for the {customer} account",
    "I'll {action} the {artifact} and ping {person} {time}",
    "the {meeting} with {customer} got pushed to {day}",
    "{person} is out {day}, so {person2} will run the {meeting}",
    "our {metric} is still {direction} after the {cause}",
    "did anyone {action} the {component} {artifact} yet",
    "{filler}, the {cause} took the {component} down for {n} minutes",
    "{customer} asked about {feature} again on the {meeting}",
    "let's timebox the {meeting} to {n} minutes {day}",
]
SCREEN = [
    "{exc}: {msg} at {module}/{file}.py:{line}",
    "{app} — {project} {artifact}",
    "GET /api/v{v}/{res}/{id} {http} {ms}ms",
    "POST /api/v{v}/{res} {http} {ms}ms",
    "def {func}_{module}({arg}):",
    "Slack | #{chan} | {person}: {short}",
    "Invoice #{num} — {customer} — ${amount}",
    "{module}_service.py — {app}",
    "Jira {key}-{num2}: {component} is {problem}",
    "Grafana · {component} · p99 latency {ms} ms",
    "git commit -m \"{action} {module} {artifact}\"",
    "{person} shared \"{project} {artifact}\" with you",
    "WARN [{module}] {component} {problem} (retry {n}/5)",
    "Calendar: {meeting} · {day} {time}",
]
FUNCS = ["load", "save", "parse", "handle", "validate", "render", "fetch", "sync", "compute", "refresh"]
ARGS = ["self", "request", "user_id", "payload", "ctx, items", "path, mode='r'", "df", "event"]
SHORTS = ["lgtm", "on it", "can you take a look?", "deploying now", "rolled back", "thanks!", "see thread",
          "meeting moved", "who's on call?", "fixed in main"]
KEYS = ["ENG", "OPS", "WEB", "APP", "DATA", "SEC"]


def _fill(tpl: str, r: random.Random) -> str:
    c = r.choice
    return tpl.format(
        person=c(PEOPLE), person2=c(PEOPLE), project=c(PROJECTS), day=c(DAYS), time=c(TIMES),
        meeting=c(MEETINGS), artifact=c(ARTIFACTS), component=c(COMPONENTS), problem=c(PROBLEMS),
        cause=c(CAUSES), action=c(ACTIONS), metric=c(METRICS), direction=c(DIRECTIONS), period=c(PERIODS),
        customer=c(CUSTOMERS), feature=c(FEATURES), filler=c(FILLERS), n=r.randint(2, 60), app=c(APPS),
        exc=c(EXCEPTIONS), msg=c(MESSAGES), module=c(MODULES), file=c(MODULES), line=r.randint(10, 2000),
        v=r.randint(1, 3), res=c(RESOURCES), id=r.randint(1, 99999), http=c(HTTP), ms=r.randint(3, 2500),
        func=c(FUNCS), arg=c(ARGS), chan=c(CHANNELS), short=c(SHORTS), num=r.randint(1000, 99999),
        customer2=c(CUSTOMERS), amount=f"{r.randint(10, 99999)}.{r.randint(0, 99):02d}", key=c(KEYS),
        num2=r.randint(1, 9999))


def sentence_pool(n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """n distinct speech sentences and n distinct screen texts."""
    r = random.Random(seed)
    out = []
    for templates in (SPEECH, SCREEN):
        seen: dict[str, None] = {}
        while len(seen) < n:
            seen.setdefault(_fill(r.choice(templates), r))
        out.append(list(seen))
    return out[0], out[1]


def pool_vectors(out: Path, distinct: int) -> tuple[list[str], np.ndarray, float]:
    """The distinct sentences and their vectors (cached in ``out``), and the embedder's sentences/s."""
    from vdbnb.ai.embed import get_embedder

    speech, screen = sentence_pool(distinct // 2)
    texts = speech + screen
    emb = get_embedder()
    sample = texts[:: max(1, len(texts) // 2000)][:2000]
    t = time.perf_counter()
    emb.embed(sample)
    rate = len(sample) / (time.perf_counter() - t)
    cache = out / f"pool-{distinct}.npy"
    if cache.exists():
        vecs = np.load(cache)
    else:
        print(f"embedding {len(texts):,} distinct sentences at ~{rate:.0f}/s "
              f"(~{len(texts) / rate / 60:.1f} min; cached in {cache})", flush=True)
        vecs = emb.embed(texts)
        np.save(cache, vecs)
    return texts, vecs, rate


# ------------------------------------------------------------------------------ vector back-end comparison
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pcts(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))



def compare_backends(vecs: np.ndarray, queries: np.ndarray, k: int = 5, only: list[str] | None = None) -> list[dict]:
    """Build each available vector index over ``vecs`` and measure build time, memory, latency, recall@k."""
    n = len(vecs)
    keys = np.arange(n, dtype=np.uint64)
    exact_sims = queries @ vecs.T if n * len(queries) <= 4e8 else np.concatenate(
        [queries[i:i + 50] @ vecs.T for i in range(0, len(queries), 50)])
    kth = -np.sort(-exact_sims, axis=1)[:, k - 1]
    sims_of = lambda qi, ids: exact_sims[qi, np.asarray(ids, dtype=np.int64)]  # noqa: E731
    rows = []

    def run(name, build, search, nq=len(queries)):
        gc.collect()
        m0 = rss_mb()
        t = time.perf_counter()
        idx = build()
        bt = time.perf_counter() - t
        mem = rss_mb() - m0
        ms, found = [], []
        for q in queries[:nq]:
            t = time.perf_counter()
            ids = search(idx, q)
            ms.append((time.perf_counter() - t) * 1000)
            found.append(np.asarray(ids)[:k])
        p50, p95 = _pcts(ms)
        rec = float(np.mean([min(1.0, np.sum(sims_of(i, f) >= kth[i] - 1e-3) / k) for i, f in enumerate(found)]))
        rows.append(dict(backend=name, build_s=bt, mem_mb=mem, p50_ms=p50, p95_ms=p95, recall=rec, queries=nq))
        print(f"  {name:34s} build {bt:7.1f}s  mem {mem:7.0f} MB  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  "
              f"recall@{k} {rec:.3f}", flush=True)
        del idx
        gc.collect()

    want = lambda s: not only or any(o in s for o in only)  # noqa: E731
    if want("numpy"):
        run("numpy exact f32 (matmul)", lambda: vecs.copy(), lambda m, q: np.argpartition(-(m @ q), k)[:k])
    if want("vdbnb"):
        from vdbnb.server.vectors import VectorIndex
        work = Path(tempfile.mkdtemp(prefix="vdbnb-bench-vec-"))
        built = {}

        def build_v():
            ix = VectorIndex(work / "v", threads=2)
            for i in range(0, n, 100_000):  # ids start at 1
                ix.add(np.arange(i + 1, min(n, i + 100_000) + 1), vecs[i:i + 100_000])
            return ix
        for r in (2000, 8000):
            run(f"vdbnb 1-bit scan + f16 rescore R={r}", lambda: built.setdefault("ix", build_v()),
                lambda ix, q, r=r: ix.search(q, k, rescore=r)[0] - 1)
        rows[-1]["build_s"], rows[-1]["mem_mb"] = rows[-2]["build_s"], rows[-2]["mem_mb"]
        built["ix"].close()
        built.clear()
        shutil.rmtree(work, ignore_errors=True)
    try:
        from usearch.index import Index
        if want("usearch HNSW"):
            def build_u():
                ix = Index(ndim=vecs.shape[1], metric="ip", dtype="f16", connectivity=16,
                           expansion_add=128, expansion_search=64)
                ix.add(keys, vecs, threads=2)
                return ix
            built = {}

            def search_u(ix, q, ef):
                ix.expansion_search = ef
                return ix.search(q, k).keys
            run("usearch HNSW f16 M=16 ef=64", lambda: built.setdefault("ix", build_u()),
                lambda ix, q: search_u(ix, q, 64))
            for ef in (128, 256):
                run(f"usearch HNSW f16 M=16 ef={ef} (same graph)", lambda: built["ix"],
                    lambda ix, q, ef=ef: search_u(ix, q, ef))
            rows[-1]["build_s"] = rows[-2]["build_s"] = rows[-3]["build_s"]
            rows[-1]["mem_mb"] = rows[-2]["mem_mb"] = rows[-3]["mem_mb"]
            built.clear()
        if want("usearch exact"):
            from usearch.index import search as usearch_search
            run("usearch exact f16 (brute force)", lambda: vecs.astype(np.float16),
                lambda m, q: usearch_search(m, q.astype(np.float16), k, "ip", exact=True, threads=2).keys,
                nq=min(len(queries), 50))
    except ImportError:
        print("  (usearch not installed)")
    try:
        import hnswlib
        if want("hnswlib"):
            def build_h():
                ix = hnswlib.Index(space="ip", dim=vecs.shape[1])
                ix.init_index(max_elements=n, ef_construction=128, M=16)
                ix.set_num_threads(2)
                ix.add_items(vecs, np.arange(n))
                ix.set_ef(64)
                return ix
            run("hnswlib HNSW f32 M=16", build_h, lambda ix, q: ix.knn_query(q, k)[0][0])
    except ImportError:
        print("  (hnswlib not installed)")
    try:
        import faiss
        faiss.omp_set_num_threads(2)
        if want("faiss HNSW"):
            def build_fh():
                ix = faiss.IndexHNSWFlat(vecs.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
                ix.hnsw.efConstruction = 128
                ix.add(vecs)
                ix.hnsw.efSearch = 64
                return ix
            run("faiss HNSWFlat f32 M=16", build_fh, lambda ix, q: ix.search(q[None], k)[1][0])
        if want("faiss IVF"):
            nlist = int(4 * np.sqrt(n))

            def build_fi():
                quant = faiss.IndexFlatIP(vecs.shape[1])
                ix = faiss.IndexIVFScalarQuantizer(quant, vecs.shape[1], nlist, faiss.ScalarQuantizer.QT_8bit,
                                                   faiss.METRIC_INNER_PRODUCT)
                ix.train(vecs[np.random.default_rng(0).choice(n, min(n, nlist * 40), replace=False)])
                ix.add(vecs)
                ix.nprobe = 32
                return ix
            run(f"faiss IVF{nlist},SQ8 nprobe=32", build_fi, lambda ix, q: ix.search(q[None], k)[1][0])
    except ImportError:
        print("  (faiss not installed)")
    try:
        import sqlite3
        import sqlite_vec
        if want("sqlite-vec"):
            def build_sv():
                db = sqlite3.connect(":memory:")
                db.enable_load_extension(True)
                sqlite_vec.load(db)
                db.execute(f"create virtual table v using vec0(embedding float[{vecs.shape[1]}] distance_metric=cosine)")
                db.executemany("insert into v(rowid, embedding) values (?, ?)",
                               ((i, vecs[i].tobytes()) for i in range(n)))
                db.commit()
                return db
            run("sqlite-vec vec0 f32 (brute force)", build_sv,
                lambda db, q: [r[0] for r in db.execute(
                    "select rowid from v where embedding match ? and k = ?", (q.tobytes(), k))],
                nq=min(len(queries), 20))
    except ImportError:
        print("  (sqlite-vec not installed)")
    return rows


# ------------------------------------------------------------------------------------------- the corpus
def compose_vectors(pool: np.ndarray, pairs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Vectors of two-sentence segments: the normalised, token-weighted mean of the sentences' vectors
    (the fidelity to MiniLM run on the joined text is measured and printed by ``fidelity()``)."""
    v = pool[pairs[:, 0]] * weights[pairs[:, 0], None] + pool[pairs[:, 1]] * weights[pairs[:, 1], None]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def segment_layout(n: int, distinct: int, seed: int = 11):
    """Yield, per segment: (pair of pool indices, session, stream, channel, kind, start, end).
    Sessions of ~1 h with three streams; one segment every ~3.6 s per stream → 1 M segments ≈ 1,000 h."""
    rng = np.random.default_rng(seed)
    half = distinct // 2
    per_stream = 1000
    n_sessions = max(1, -(-n // (3 * per_stream)))
    t_base = 1_750_000_000.0
    i = 0
    for s in range(n_sessions):
        t0 = t_base + s * 86400 * 180 / n_sessions + float(rng.uniform(0, 3600))
        for chan, kind in (("mic", "transcript"), ("system_audio", "transcript"), ("screen", "ocr")):
            m = min(per_stream, n - i)
            if m <= 0:
                return
            lo, hi = (half, distinct) if chan == "screen" else (0, half)
            pairs = rng.integers(lo, hi, size=(m, 2))
            dur = rng.uniform(2.0, 6.0, m)
            starts = t0 + np.cumsum(rng.uniform(3.0, 4.5, m))
            yield pairs, f"ses{s:05d}", f"rts{s:05d}-{chan}", chan, kind, starts, starts + dur
            i += m


def fidelity(texts: list[str], pool: np.ndarray, weights: np.ndarray, n: int = 300) -> float:
    """Mean cosine between composed vectors and MiniLM run on the joined texts."""
    from vdbnb.ai.embed import get_embedder
    rng = np.random.default_rng(5)
    half = len(texts) // 2
    pairs = np.concatenate([rng.integers(0, half, (n // 2, 2)), rng.integers(half, len(texts), (n - n // 2, 2))])
    real = get_embedder().embed([f"{texts[a]}. {texts[b]}" for a, b in pairs])
    return float(np.mean(np.sum(real * compose_vectors(pool, pairs, weights), axis=1)))


def open_index(out: Path, database_url: str | None = None, fresh: bool = False):
    """The index under test: the embedded SearchIndex (a file under ``out``) or, with ``database_url``, the
    PostgreSQL one (``fresh``: its segments are dropped first)."""
    if database_url:
        from vdbnb.server.search_pg import PgSearchIndex
        from vdbnb.server.store_pg import PostgresStore
        store = PostgresStore(database_url)
        if fresh:
            store.execute("DROP TABLE IF EXISTS segments")
            store.execute("DROP TABLE IF EXISTS search_meta")
        return PgSearchIndex(store, close_store=True)
    from vdbnb.server.search import SearchIndex
    if fresh:
        for p in out.glob("search.sqlite*"):
            p.unlink()
    return SearchIndex(out / "search.sqlite")


def nearest(ix, q: np.ndarray, k: int = 5) -> np.ndarray:
    """The vector layer alone: row ids of the k nearest (what the semantic leg ranks before filters)."""
    if hasattr(ix, "vectors"):
        return ix.vectors.search(q, k)[0]
    return np.array([i for i, _ in ix.nearest(q, k)], dtype=np.int64)


def row_ids(ix, doc_ids: list[str]) -> dict[str, int]:
    if hasattr(ix, "_db"):
        return dict(ix._db().execute(f"SELECT doc_id, id FROM segments WHERE doc_id IN "
                                     f"({','.join('?' * len(doc_ids))})", doc_ids).fetchall())
    return {r["doc_id"]: r["id"] for r in ix.store.all("SELECT doc_id, id FROM segments WHERE doc_id = ANY(?)",
                                                        (list(doc_ids),))}


def build_index(out: Path, n: int, texts: list[str], pool: np.ndarray, weights: np.ndarray,
                planted: list[Item], keep_matrix: bool, database_url: str | None = None):
    """Fill a search index with n segments (the planted ones at random places; an item with two texts as two
    consecutive segments of one stream). Returns the index, each item's planted doc ids, the stream each was
    planted in, and (optionally) the full float32 matrix by row id."""
    from vdbnb.ai.embed import get_embedder
    from vdbnb.server.search import Doc

    ix = open_index(out, database_url, fresh=True)
    if database_url:  # bulk load: COPY without the indexes, then build them once
        ix.drop_indexes()
    rng = random.Random(13)
    plant_at = sorted(3 * p for p in rng.sample(range(n // 3), len(planted)))  # room for a second segment
    flat = [t for it in planted for t in it.texts]
    vec_of = dict(zip(flat, get_embedder().embed(flat)))
    matrix = np.zeros((n + 1, pool.shape[1]), dtype=np.float32) if keep_matrix else None
    plant_ids, plant_stream = [], []
    i = 0
    t = time.perf_counter()
    pend_docs: list = []
    pend_vecs: list = []

    def commit(force: bool = False):
        # add in batches of ~20k so the graph insert runs on both cores
        if pend_docs and (force or len(pend_docs) >= 20_000):
            (ix.bulk_add if database_url else ix.add)(pend_docs, np.concatenate(pend_vecs))
            pend_docs.clear()
            pend_vecs.clear()

    for pairs, ses, rts, chan, kind, starts, ends in segment_layout(n, len(texts)):
        vecs = compose_vectors(pool, pairs, weights)
        docs = [Doc(f"seg{i + j:07d}", "c-bench", ses, rts, f"{chan} ({ses})", chan, kind, None,
                    float(starts[j]), float(ends[j]), f"{texts[a]}. {texts[b]}", {})
                for j, (a, b) in enumerate(pairs)]
        for j in range(len(docs)):
            if plant_at and plant_at[0] == i + j:
                k = len(plant_ids)
                it = planted[k]
                speech = it.kind in ("paraphrase", "split")
                at = j if j + len(it.texts) <= len(docs) else len(docs) - len(it.texts)
                ids = []
                for m, text in enumerate(it.texts):
                    d = docs[at + m]
                    docs[at + m] = Doc(f"plant{k:03d}{'ab'[m]}", d.collection_id, d.session_id, d.rtstream_id,
                                       d.rtstream_name, "mic" if speech else "screen",
                                       "transcript" if speech else "ocr", None, d.start, d.end, text,
                                       {"planted": True})
                    vecs[at + m] = vec_of[text]
                    ids.append(docs[at + m].doc_id)
                plant_ids.append(ids)
                plant_stream.append(docs[at].rtstream_id)
                plant_at.pop(0)
        pend_docs.extend(docs)
        pend_vecs.append(vecs)
        commit()
        if matrix is not None:
            matrix[i + 1:i + 1 + len(docs)] = vecs  # row ids start at 1, in insertion order
        i += len(docs)
        if i % 100_000 < len(docs):
            el = time.perf_counter() - t
            print(f"  indexed {i:,}/{n:,} segments in {el:.0f}s ({i / el:,.0f}/s)", flush=True)
    commit(force=True)
    if database_url:
        t = time.perf_counter()
        ix.reindex()
        print(f"  PostgreSQL indexes (HNSW on binary codes, GIN on tsvector) built in "
              f"{time.perf_counter() - t:.0f}s", flush=True)
    ix.flush()
    return ix, plant_ids, plant_stream, matrix


def measure(ix, queries: list[str], answers: list[tuple[str, ...]], mode: str,
            **filters) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, recall@5) of ix.search over the labelled queries (embedding included); a query is
    answered when any of its planted segments is in the top 5."""
    ms, found = [], 0
    for q, a in zip(queries, answers):
        kw = {k: (v(a) if callable(v) else v) for k, v in filters.items()}
        t = time.perf_counter()
        hits = ix.search(q, "c-bench", limit=5, mode=mode, **kw)
        ms.append((time.perf_counter() - t) * 1000)
        found += any(h.doc_id in a for h in hits)
    return (*_pcts(ms), found / len(queries))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="segments to index (default 1,000,000)")
    ap.add_argument("--distinct", type=int, default=60_000, help="distinct sentences embedded for real")
    ap.add_argument("--out", type=Path, help="work dir (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--compare", action="store_true", help="also compare vector back-ends on the same vectors")
    ap.add_argument("--compare-only", action="store_true", help="only the back-end comparison")
    ap.add_argument("--only", help="comma-separated back-end name fragments for --compare")
    ap.add_argument("--reuse", action="store_true", help="reuse the index a previous run left in --out (same --n)")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before measuring (root only)")
    ap.add_argument("--show-misses", action="store_true", help="print each labelled query hybrid search missed")
    ap.add_argument("--random-queries", type=int, default=140, help="extra unlabelled queries for ANN recall")
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the embedded index (default) or the PostgreSQL one")
    ap.add_argument("--database-url", help="with --backend postgresql: a database to use (its segments are "
                    "replaced); default: a PostgreSQL started for the run (tests/engines.py)")
    a = ap.parse_args(argv)
    out = a.out or Path(tempfile.mkdtemp(prefix="vdbnb-bench-search-"))
    out.mkdir(parents=True, exist_ok=True)
    engine = None
    if a.backend == "postgresql" and not a.database_url:
        from testkit.engines import Postgres
        # with --out, the server's data stays under it (with --keep) so that --reuse finds the built index
        engine = Postgres(out / "postgresql" if a.out else None).start()
        a.database_url = engine.new_database("bench", exist_ok=True)
    db_url = a.database_url if a.backend == "postgresql" else None
    try:
        texts, pool, rate = pool_vectors(out, a.distinct)
        print(f"embedder: {rate:.0f} sentences/s (batch 64, 2 threads)", flush=True)
        tok = np.array([len(t.split()) for t in texts], dtype=np.float32)
        print(f"composed two-sentence vectors vs MiniLM on the joined text: mean cosine "
              f"{fidelity(texts, pool, tok):.3f}", flush=True)
        planted = labelled("dev") + labelled("heldout")
        queries = [it.query for it in planted]
        from vdbnb.ai.embed import get_embedder
        sp, sc = sentence_pool(a.random_queries, seed=99)
        extra = sp[: a.random_queries // 2] + sc[: a.random_queries - a.random_queries // 2]
        qvecs = get_embedder().embed(queries + extra)

        if a.compare or a.compare_only:
            matrix = np.zeros((a.n, pool.shape[1]), dtype=np.float32)
            i = 0
            for pairs, *_ in segment_layout(a.n, len(texts)):
                matrix[i:i + len(pairs)] = compose_vectors(pool, pairs, tok)
                i += len(pairs)
            print(f"\nvector back-ends over {a.n:,} vectors, {len(qvecs)} queries, k=5:", flush=True)
            rows = compare_backends(matrix, qvecs, only=a.only.split(",") if a.only else None)
            print("\n| back-end | build s | memory MB | p50 ms | p95 ms | recall@5 vs exact | queries |")
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['backend']} | {r['build_s']:.1f} | {r['mem_mb']:.0f} | {r['p50_ms']:.2f} | "
                      f"{r['p95_ms']:.2f} | {r['recall']:.3f} | {r['queries']} |")
            del matrix
            gc.collect()
            if a.compare_only:
                return 0

        meta_path = out / f"bench-index-{a.backend}.json"
        meta = json.loads(meta_path.read_text()) if a.reuse and meta_path.exists() else None
        if meta and db_url:  # the segments must still be in the database
            ix = open_index(out, db_url)
            if len(ix) != a.n or not (out / "matrix-postgresql.npy").exists():
                meta = None
            ix.close()
        if meta and meta["n"] == a.n and meta["queries"] == queries and db_url:
            build_s = meta["build_s"]
            answers, streams = meta["answers"], meta["streams"]
            print(f"\nreusing the PostgreSQL search index over {a.n:,} segments (built in {build_s:.0f}s)", flush=True)
            ix = open_index(out, db_url)
            matrix = np.load(out / "matrix-postgresql.npy", mmap_mode="r").astype(np.float32)
        elif meta and meta["n"] == a.n and meta["queries"] == queries:
            build_s = meta["build_s"]
            answers, streams = [tuple(x) for x in meta["answers"]], meta["streams"]
            print(f"\nreusing the search index over {a.n:,} segments in {out} (built in {build_s:.0f}s)", flush=True)
            t = time.perf_counter()
            ix = open_index(out)
            print(f"  opened in {time.perf_counter() - t:.1f}s", flush=True)
            matrix = np.asarray(ix.vectors._flat[: a.n + 1], dtype=np.float32)  # what the index stores, by row id
        else:
            print(f"\nbuilding the search index over {a.n:,} segments in {out}", flush=True)
            m0 = rss_mb()
            t = time.perf_counter()
            ix, answers, streams, matrix = build_index(out, a.n, texts, pool, tok, planted, keep_matrix=True,
                                                       database_url=db_url)
            build_s = time.perf_counter() - t
            sizes = {p.name: p.stat().st_size / 2**20 for p in out.glob("search.sqlite*")}
            if db_url:
                sizes = {r["name"]: r["mb"] for r in ix.store.all(
                    "SELECT relname AS name, pg_total_relation_size(oid) / 1048576.0 AS mb FROM pg_class "
                    "WHERE relname IN ('segments', 'segments_bits', 'segments_tsv')")}
            print(f"  built in {build_s:.0f}s; RSS +{rss_mb() - m0:.0f} MB (incl. the bench's own "
                  f"{matrix.nbytes / 2**20:.0f} MB matrix); files: "
                  + ", ".join(f"{k} {v:.0f} MB" for k, v in sizes.items()), flush=True)
            ix.close()
            if db_url:  # the vectors by row id, for the exact-search reference of a later --reuse
                np.save(out / "matrix-postgresql.npy", matrix.astype(np.float16))
            meta_path.write_text(json.dumps(dict(n=a.n, queries=queries, answers=answers, streams=streams,
                                                 build_s=build_s)))
            t = time.perf_counter()
            ix = open_index(out, db_url)
            print(f"  reopened in {time.perf_counter() - t:.1f}s", flush=True)

        # ANN recall@5 against exact search over every stored vector
        exact = np.concatenate([qvecs[i:i + 50] @ matrix.T for i in range(0, len(qvecs), 50)])
        exact[:, 0] = -9  # row 0 is unused
        kth = -np.sort(-exact, axis=1)[:, 4]
        ann_ms, rec = [], []
        for qi, q in enumerate(qvecs):
            t = time.perf_counter()
            ids = nearest(ix, q, 5)
            ann_ms.append((time.perf_counter() - t) * 1000)
            rec.append(min(1.0, np.sum(exact[qi, ids] >= kth[qi] - 1e-3) / 5))
        # the ceiling any index can reach: where exact cosine over everything ranks each labelled answer
        answers = [tuple(x) for x in answers]
        rowid = row_ids(ix, [d for ans in answers for d in ans])
        exact_rank = [min(int(np.sum(exact[qi] > exact[qi, rowid[d]])) for d in ans) for qi, ans in enumerate(answers)]
        del matrix, exact
        gc.collect()
        ann_p50, ann_p95 = _pcts(ann_ms)

        if a.cold:  # measure as after a reboot: nothing of the index in the page cache
            try:
                os.sync()
                Path("/proc/sys/vm/drop_caches").write_text("1\n")
                print("  page cache dropped: the first queries read the index from disk", flush=True)
            except OSError as e:
                print(f"  --cold: cannot drop the page cache ({e}); needs root", flush=True)
        else:
            ix.search("warm up", "c-bench")
        kinds = [it.kind for it in planted]
        sets = [it.split for it in planted]
        dev = [i for i, x in enumerate(sets) if x == "dev"]

        def sub(idx):
            return [queries[i] for i in idx], [answers[i] for i in idx]
        results = []  # latency and filters over DEV
        for mode in ("hybrid", "semantic", "keyword"):
            results.append((f"{mode} (dev)", *measure(ix, *sub(dev), mode)))
        by_stream = dict(zip(answers, streams))
        results.append(("hybrid, rtstream_id filter (dev)", *measure(ix, *sub(dev), "hybrid",
                                                                      rtstream_id=lambda a: by_stream[a])))
        results.append(("hybrid, channel_ids+kinds filter (dev)", *measure(
            ix, *sub(dev), "hybrid", channel_ids=["mic", "screen"], kinds=["transcript", "ocr"])))
        # broad filters: a third (screen) and two thirds (transcript) of all rows pass
        sel = [i for i in dev if kinds[i] == "keyword"]
        results.append(("hybrid, channel_ids=[screen] (dev keyword queries)", *measure(
            ix, *sub(sel), "hybrid", channel_ids=["screen"])))
        sel = [i for i in dev if kinds[i] == "paraphrase"]
        results.append(("hybrid, kinds=[transcript] (dev paraphrase queries)", *measure(
            ix, *sub(sel), "hybrid", kinds=["transcript"])))
        # recall@5 by set and kind, each mode
        by_kind = []
        for set_name in ("dev", "heldout"):
            for kind in ("all", "paraphrase", "split", "keyword", "mixed"):
                sel = [i for i, (x, k) in enumerate(zip(sets, kinds)) if x == set_name and kind in ("all", k)]
                if not sel:
                    continue
                rec_modes = [measure(ix, *sub(sel), mode)[2] for mode in ("hybrid", "semantic", "keyword")]
                ceiling = float(np.mean([exact_rank[i] < 5 for i in sel]))
                by_kind.append((set_name, kind, len(sel), *rec_modes, ceiling))
        if a.show_misses:
            print("\nDEV queries whose answer hybrid search did not rank in the top 5 (held-out misses are not "
                  "shown: do not tune on them):")
            for qi in dev:
                q, ans = queries[qi], answers[qi]
                hits = ix.search(q, "c-bench", limit=5)
                if all(h.doc_id not in ans for h in hits):
                    print(f"- {q!r} → planted {planted[qi].texts!r} (exact cosine rank {exact_rank[qi] + 1}); "
                          f"top 3: {[h.text for h in hits[:3]]}")
        ix.close()

        print(f"\nresults over {a.n:,} segments on {a.backend} ({len(queries)} labelled queries: "
              f"{len(dev)} dev, {len(queries) - len(dev)} held-out)")
        print(f"| search | p50 ms | p95 ms (goal ≤ {GOAL_P95_MS:.0f}) | recall@5 (goal ≥ {GOAL_RECALL}) |")
        print("|---|---|---|---|")
        for name, p50, p95, r in results:
            flag = "" if p95 <= GOAL_P95_MS and r >= GOAL_RECALL else " ✗"
            print(f"| {name} | {p50:.1f} | {p95:.1f} | {r:.3f}{flag} |")
        how = "binary-code HNSW + halfvec rescore" if db_url else "1-bit scan + f16 rescore"
        print(f"| vectors only ({how}, {len(qvecs)} queries), recall vs exact | {ann_p50:.2f} | {ann_p95:.2f} | "
              f"{np.mean(rec):.3f} |")
        print(f"\nrecall@5 by query set and kind on {a.backend} (goal ≥ {GOAL_RECALL}; tune on dev, report "
              f"held-out; ceiling: exact cosine over all {a.n:,} vectors ranks an answer in the top 5)")
        print("| set | kind | queries | hybrid | semantic | keyword | exact-cosine ceiling |")
        print("|---|---|---|---|---|---|---|")
        for set_name, kind, nq, rh, rs, rk, ceil in by_kind:
            print(f"| {set_name} | {kind} | {nq} | {rh:.3f}{'' if rh >= GOAL_RECALL else ' ✗'} | {rs:.3f} | "
                  f"{rk:.3f} | {ceil:.3f} |")
        print(f"\nembedder: {rate:.0f} sentences/s; index build {build_s:.0f}s for {a.n:,} segments")
        return 0
    finally:
        if engine is not None:
            engine.stop(keep=bool(a.keep and a.out))
        if not a.keep and not a.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
