"""Embedded (SQLite + files) vs scale-out (PostgreSQL + S3) in the same run: ingest throughput and search p95.

    python bench/bench_scale.py                       # 8 recorders x 15 s, 20,000 search segments
    python bench/bench_scale.py --recorders 16 --seconds 30 --segments 100000
    git archive <rev> | tar -x -C /tmp/before && python bench/bench_scale.py --before /tmp/before --skip-search
                                                      # ... the same ingest, servers from another checkout too

Per fragment (one process, no websocket): ``Context`` + ``Ingest.accept`` for ``--per-fragment`` audio fragments
one after the other, on each backend: ms per fragment and the SQL statements PostgreSQL ran per fragment
(pg_stat_statements).

Ingest: for each backend a real `vdbnb serve --no-ai` (and, for PostgreSQL + S3, a second api replica taking
half of the recorders), fed by N recorders each pushing pre-encoded fragments (one 1080p H.264 GOP of 2 s, four
0.5 s Opus fragments per 2 s of media) over the ingest websocket as fast as acks come back (a window of 16 in
flight): fragments/s and MB/s acknowledged (an ack means the fragment is stored: fsync'd file, or S3 object
written), and the send→ack latency. The engines (PostgreSQL 18 + pgvector, SeaweedFS) are started by the
bench on loopback ports (tests/engines.py) and stopped at the end.

Search: the same generated corpus (bench/bench_search.py's sentences, planted labelled answers) loaded into
both search backends; p50/p95 of hybrid, semantic and keyword search and hybrid recall@5 over the labelled
queries, embedding of the query included. Ratios within one run are what count: the box is shared.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def push(base: str, sid: str, token: str, frags: list, window: int = 16) -> tuple[int, int, list[float]]:
    """Send ``frags`` over one ingest websocket, ``window`` in flight; (acked, bytes, latencies s)."""
    from websockets.asyncio.client import connect
    url = base.replace("http://", "ws://", 1) + f"/capture/session/{sid}/ingest"
    sent_at: dict[tuple[str, int], float] = {}
    lat: list[float] = []
    acked = nbytes = 0
    free = asyncio.Semaphore(window)
    async with connect(url, additional_headers={"x-access-token": token}, max_size=None, compression=None) as ws:
        await ws.recv()  # hello

        async def reader():
            nonlocal acked
            while acked < len(frags):
                m = json.loads(await ws.recv())
                if m.get("type") == "ack":
                    k = (m["channel_id"], int(m["seq"]))
                    lat.append(time.perf_counter() - sent_at.pop(k))
                    acked += 1
                    free.release()
                elif m.get("type") == "nack":
                    acked = len(frags)  # stop: a bench run must not hang on a refused fragment
                    free.release()
                    raise RuntimeError(f"the server refused a fragment: {m}")
        rt = asyncio.create_task(reader())
        for f, data in frags:
            await free.acquire()
            sent_at[(f.channel_id, f.seq)] = time.perf_counter()
            await ws.send(data)
            nbytes += len(data)
        await rt
    return acked, nbytes, lat


def session(base: str, key: str) -> tuple[str, str]:
    h = {"x-access-token": key}
    sid = httpx.post(f"{base}/collection/default/capture/session", headers=h, json={"end_user_id": "bench"},
                     timeout=30).json()["data"]["session_id"]
    tok = httpx.post(f"{base}/capture/session/token", headers=h, json={}, timeout=30).json()["data"]["token"]
    chans = [{"channel_id": "display:1", "type": "video", "name": "d", "store": True},
             {"channel_id": "mic:default", "type": "audio", "name": "m", "store": True}]
    httpx.post(f"{base}/capture/session/start", headers={"x-access-token": tok},
               json={"session_id": sid, "channels": chans}, timeout=30).raise_for_status()
    return sid, tok


def recorder_media(tpl, seconds: float, t0: float) -> list:
    """(fragment, packed bytes) of one recorder: a display and a mic for ``seconds`` of media from ``t0``."""
    from testkit.simrec import restamp
    out = []
    v, a = tpl.video, tpl.audio
    for k in range(int(seconds / 2)):
        f = restamp(v[k % len(v)], "display:1", k, t0 + 2 * k)
        out.append((f, f.pack()))
    for k in range(int(seconds / 0.5)):
        f = restamp(a[k % len(a)], "mic:default", k, t0 + 0.5 * k)
        out.append((f, f.pack()))
    out.sort(key=lambda x: x[0].t1)
    return out


def ingest(replicas: list, recorders: int, seconds: float, tpl) -> dict:
    packed = [recorder_media(tpl, seconds, time.time() - seconds) for _ in range(recorders)]
    media = []
    for i in range(recorders):
        base = replicas[i % len(replicas)]
        sid, tok = session(base.url, base.api_key)
        media.append((base.url, sid, tok, packed[i]))

    async def run_all():
        return await asyncio.gather(*(push(u, s, t, m) for u, s, t, m in media))
    t = time.perf_counter()
    res = asyncio.run(run_all())
    wall = time.perf_counter() - t
    n = sum(r[0] for r in res)
    mb = sum(r[1] for r in res) / 2**20
    lat = sorted(x * 1000 for r in res for x in r[2])
    return {"fragments": n, "wall_s": wall, "frag_s": n / wall, "mb_s": mb / wall,
            "ack_p50_ms": lat[len(lat) // 2], "ack_p95_ms": lat[int(len(lat) * 0.95)],
            "media_s_per_s": recorders * seconds / wall}


def per_fragment_child(backend: str, n: int, env_json: str, code: str) -> None:
    """In a child process (whose ``vdbnb`` comes from ``code``, another checkout, when given): time
    ``Ingest.accept`` for n audio fragments on one backend; prints a JSON line."""
    import os
    env = json.loads(env_json)
    os.environ.update(env)
    if code:  # ahead of this tree (which the module's top put first on sys.path)
        sys.path.insert(0, code)
    from testkit.simrec import Templates, restamp
    from vdbnb.config import Settings
    from vdbnb.server.context import Context
    work = Path(tempfile.mkdtemp(prefix="vdbnb-bench-frag-"))
    try:
        ctx = Context(Settings.from_env(data_dir=work))
        tpl = Templates(fps=1.0, size=(320, 180), video_s=2.0, audio_s=10.0)
        sid = ctx.sessions.create("default", "bench")["session_id"]
        ctx.sessions.start(sid, "default", [{"channel_id": "mic:default", "type": "audio", "name": "m",
                                             "store": True}])
        t0 = time.time() - n * 0.5
        bufs = [restamp(tpl.audio[k % len(tpl.audio)], "mic:default", k, t0 + 0.5 * k).pack() for k in range(n)]
        ctx.ingest.accept(sid, bufs[0])  # warm: the stream's row, the pools' connections

        def calls() -> int:
            if ctx.store.dialect != "postgresql":
                return 0
            return ctx.store.one("SELECT COALESCE(SUM(calls), 0) AS n FROM pg_stat_statements WHERE dbid = "
                                 "(SELECT oid FROM pg_database WHERE datname = current_database())")["n"]
        c0 = calls()
        ms = []
        for b in bufs[1:]:
            t = time.perf_counter()
            ctx.ingest.accept(sid, b)
            ms.append((time.perf_counter() - t) * 1000)
        stmts = float(calls() - c0 - 1) / len(ms)  # the count query itself once
        ms.sort()
        import vdbnb
        print(json.dumps({"ms_mean": sum(ms) / len(ms), "ms_p50": ms[len(ms) // 2], "statements": stmts,
                          "vdbnb": str(Path(vdbnb.__file__).parent)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def per_fragment(name: str, n: int, code: str | None) -> dict:
    import os
    import subprocess
    from testkit.backend import Backend
    b = Backend(name)
    env = {**b.env(), "VDBNB_AI": "0"}
    if b.shared:
        with __import__("psycopg").connect(b.database_url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    root = str(Path(__file__).resolve().parents[1])
    penv = {**os.environ, "PYTHONPATH": os.pathsep.join([code, root] if code else [root])}
    out = subprocess.run([sys.executable, __file__, "--per-fragment-child", name, str(n), json.dumps(env), code or ""],
                         env=penv, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def search_bench(out: Path, n: int, texts: list[str], pool: np.ndarray, database_url: str | None) -> list[tuple]:
    import bench.bench_search as bs
    out.mkdir(parents=True, exist_ok=True)
    tok = np.array([len(t.split()) for t in texts], dtype=np.float32)
    planted = bs.labelled_queries(random.Random(3))
    queries = [q for _, q, _ in planted]
    ix, answers, _, _ = bs.build_index(out, n, texts, pool, tok, planted, keep_matrix=False,
                                       database_url=database_url)
    ix.search("warm up", "c-bench")
    rows = [(mode, *bs.measure(ix, queries, answers, mode)) for mode in ("hybrid", "semantic", "keyword")]
    ix.close()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recorders", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0, help="media per recorder")
    ap.add_argument("--segments", type=int, default=20_000)
    ap.add_argument("--distinct", type=int, default=3_000, help="distinct sentences embedded for real")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--before", help="a checkout of another revision (e.g. `git archive REV | tar -x -C DIR`): "
                    "its servers are measured too, in the same run, for a before/after table")
    ap.add_argument("--per-fragment", type=int, default=40, help="audio fragments of the one-process "
                    "measurement (0: skip it)")
    ap.add_argument("--per-fragment-child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.per_fragment_child:
        per_fragment_child(a.per_fragment_child[0], int(a.per_fragment_child[1]), *a.per_fragment_child[2:])
        return 0
    from testkit.backend import Backend, stop_engines
    from testkit.server import ServerProc
    from testkit.simrec import Templates
    work = Path(tempfile.mkdtemp(prefix="vdbnb-bench-scale-"))
    procs = []
    try:
        print("encoding templates (1080p H.264 GOPs, Opus) ...", flush=True)
        tpl = Templates(fps=1.0, size=(1920, 1080), video_s=20.0, audio_s=10.0)
        results = {}
        code = {"this tree": None, **({"before": str(Path(a.before).resolve())} if a.before else {})}
        for name in ("sqlite", "postgresql"):
            for variant, path in code.items():
                backend = Backend(name)
                reps = []
                for r in range(1 if name == "sqlite" else 2):
                    env = {"VDBNB_API_KEY": "sk-bench-scale-key-0123456789", "VDBNB_RECORDER_GRACE_S": "300"}
                    if path:  # the servers run the other checkout's vdbnb
                        env["PYTHONPATH"] = path
                    s = ServerProc(work / f"{name}-{variant}-{r}", backend=backend, env=env)
                    s.args = ["--no-ai"] + (["--role", "api"] if name == "postgresql" else [])
                    procs.append(s)
                    reps.append(s.start())
                # a short unmeasured run first: each variant meets warm servers and engines (SeaweedFS grows its
                # volumes on the first writes; without this the first variant measured pays for it)
                ingest(reps, 2, 4.0, tpl)
                print(f"ingest on {name} ({variant}): {a.recorders} recorders x {a.seconds:.0f} s of media over "
                      f"{len(reps)} replica(s) ...", flush=True)
                results[(name, variant)] = ingest(reps, a.recorders, a.seconds, tpl)
                print("  " + json.dumps({k: round(v, 1) for k, v in results[(name, variant)].items()}), flush=True)
                for s in reps:
                    s.stop()
        print("\n| ingest | code | fragments/s | MB/s | media s per s | ack p50 ms | ack p95 ms |")
        print("|---|---|---|---|---|---|---|")
        for (name, variant), r in results.items():
            label = "embedded (SQLite + files, 1 process)" if name == "sqlite" else \
                "PostgreSQL + S3 (SeaweedFS), 2 api replicas"
            print(f"| {label} | {variant} | {r['frag_s']:.0f} | {r['mb_s']:.1f} | {r['media_s_per_s']:.0f} | "
                  f"{r['ack_p50_ms']:.1f} | {r['ack_p95_ms']:.1f} |")
        for variant in code:
            print(f"PostgreSQL+S3 / embedded throughput ({variant}): "
                  f"{results[('postgresql', variant)]['frag_s'] / results[('sqlite', variant)]['frag_s']:.2f}")

        if a.per_fragment:
            rows = []
            for name in ("sqlite", "postgresql"):
                for variant, path in code.items():
                    print(f"per fragment on {name} ({variant}): {a.per_fragment} audio fragments ...", flush=True)
                    rows.append((name, variant, per_fragment(name, a.per_fragment, path)))
            print("\n| one fragment at a time, one process | code | ms per fragment (mean / p50) | SQL statements "
                  "per fragment |")
            print("|---|---|---|---|")
            for name, variant, r in rows:
                label = "embedded (SQLite + files)" if name == "sqlite" else "PostgreSQL + S3 (SeaweedFS)"
                st = f"{r['statements']:.1f}" if name == "postgresql" else "n/a"
                print(f"| {label} | {variant} | {r['ms_mean']:.1f} / {r['ms_p50']:.1f} | {st} |")

        if not a.skip_search:
            import bench.bench_search as bs
            texts, pool, _ = bs.pool_vectors(work, a.distinct)  # one corpus for both backends
            rows = {}
            for name in ("sqlite", "postgresql"):
                url = Backend(name).database_url if name == "postgresql" else None
                print(f"\nsearch on {name}: {a.segments:,} segments ...", flush=True)
                rows[name] = search_bench(work / f"search-{name}", a.segments, texts, pool, url)
            print(f"\n| search ({a.segments:,} segments) | embedded p50 / p95 ms | PostgreSQL p50 / p95 ms | "
                  "recall@5 embedded / PostgreSQL |")
            print("|---|---|---|---|")
            for (mode, p50, p95, r), (_, q50, q95, rq) in zip(rows["sqlite"], rows["postgresql"]):
                print(f"| {mode} | {p50:.1f} / {p95:.1f} | {q50:.1f} / {q95:.1f} | {r:.3f} / {rq:.3f} |")
        return 0
    finally:
        for s in procs:
            s.stop()
        stop_engines()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
