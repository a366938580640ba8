"""Soak: one long capture with the real recorder on the rig → `vdbnb serve --no-ai`; memory must not creep.

    RIG_DISPLAY=:94 python bench/bench_soak.py --minutes 60     # the real thing (1 hour)
    RIG_DISPLAY=:94 python bench/bench_soak.py --minutes 3      # quick mode
    python bench/bench_soak.py --minutes 3 --sim                # no rig: a simulated recorder (testkit/simrec.py)

The recorder captures display:1 (2 fps, every frame encoded: skip_static off) and two audio channels of the rig
(its system audio and a null sink of the bench's own standing in for the microphone, so that tests unplugging
the rig's microphone can run meanwhile) while an xterm keeps the screen changing. Every 10 s the RSS of the server and of the recorder
(with its capture children) is sampled. Warm-up is the first 5 minutes (or the first third of a shorter run);
the figure is the growth of RSS from the end of warm-up to the end of the run (and the max over the run), which
must be <= 10 %. At the end the recording is stopped and every fragment must be on the server, in order.
Writes a JSON summary to --out (default bench/results/soak-<minutes>m.json)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.procs import cpu_s, rss_kb, tree_rss_kb  # noqa: E402
from testkit.server import Server  # noqa: E402
from testkit.stored import db_fragments, integrity_check, new_session  # noqa: E402

SOAK_SINK = "vdbnb_soak_mic"
# the "microphone" is the monitor of a null sink of its own, so that tests unplugging the rig's virtual_mic can
# run on the same rig during a soak
CH = ["display:1", f"system_audio:{SOAK_SINK}.monitor", "system_audio:default"]


def summarize(samples: list[dict], key: str, warm_s: float) -> dict:
    t0 = samples[0]["t"]
    warm = [s for s in samples if s["t"] - t0 >= warm_s]
    base = warm[0][key] if warm else samples[0][key]
    end = samples[-1][key]
    peak = max(s[key] for s in (warm or samples))
    # least-squares slope after warm-up, MB per hour
    xs = [(s["t"] - t0) / 3600 for s in warm] or [0.0]
    ys = [s[key] / 1024 for s in warm] or [0.0]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return {"rss_mb_start": round(samples[0][key] / 1024, 1), "rss_mb_after_warmup": round(base / 1024, 1),
            "rss_mb_end": round(end / 1024, 1), "rss_mb_max_after_warmup": round(peak / 1024, 1),
            "growth_pct": round(100 * (end - base) / base, 1), "max_growth_pct": round(100 * (peak - base) / base, 1),
            "slope_mb_per_h": round(slope, 2)}


def run_rig(srv: Server, minutes: float, spool: Path, samples: list, every: float) -> dict:
    import rig
    rig.use()
    from vdbnb.capture import SyncCaptureClient
    sid, token = new_session(srv)
    mod = subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={SOAK_SINK}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    term = subprocess.Popen(["xterm", "-geometry", "160x50+50+50", "-e",
                             "bash -c 'while true; do date; ls -la /usr/bin | shuf -n 40; sleep 0.5; done'"],
                            stderr=subprocess.DEVNULL)
    c = SyncCaptureClient(token, srv.url)
    try:
        chans = [x for x in c.list_channels().all() if x.id in CH]
        c.start_session(sid, chans, spoolDir=str(spool), video={"skip_static": False, "fps": 2})
        rec = c.pid
        t_end = time.time() + minutes * 60
        while True:
            st = c.stats()
            samples.append({"t": time.time(), "server": rss_kb(srv.proc.pid), "recorder": tree_rss_kb(rec),
                            "server_cpu_s": cpu_s(srv.proc.pid), "recorder_cpu_s": cpu_s(rec),
                            "acked": sum(v + 1 for v in (st["acked"] or {}).values()),
                            "unacked": sum((st["unacked"] or {}).values())})
            if time.time() >= t_end:
                break
            time.sleep(min(every, max(0.0, t_end - time.time())))
        done = c.stop_session()
    finally:
        c.shutdown()
        term.terminate()
        subprocess.run(["pactl", "unload-module", mod], capture_output=True)
    in_db = db_fragments(srv.data_dir, sid)
    complete = done["status"] == "complete" and all(
        in_db.get(cid) == list(range(done["fragments"][cid])) for cid in CH)
    return {"session": sid, "fragments": done["fragments"], "all_stored_in_order": complete,
            "upload": done["upload"]}


def run_sim(srv: Server, minutes: float, samples: list, every: float) -> dict:
    from testkit.simrec import SimRecorder, Templates
    sid, token = new_session(srv)
    chans = {"display:1": "video", "mic:default": "audio", "system_audio:default": "audio"}  # as names only
    sim = SimRecorder(srv.url, sid, token, chans, Templates(fps=2.0), minutes * 60)

    async def main():
        await sim.start()
        task = asyncio.create_task(sim.run())
        while not task.done():
            samples.append({"t": time.time(), "server": rss_kb(srv.proc.pid), "recorder": tree_rss_kb(os.getpid()),
                            "server_cpu_s": cpu_s(srv.proc.pid), "recorder_cpu_s": cpu_s(os.getpid()),
                            "acked": sum(len(v) for v in sim.stats.acked.values()), "unacked": len(sim.unacked)})
            await asyncio.wait({task}, timeout=every)
        await sim.stop()
        return task.result()

    st = asyncio.run(main())
    in_db = db_fragments(srv.data_dir, sid)
    return {"session": sid, "fragments": st.produced, "nacks": len(st.nacks),
            "all_stored_in_order": all(in_db.get(c) == list(range(n)) for c, n in st.produced.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--sim", action="store_true", help="simulated recorder instead of the real one on the rig")
    ap.add_argument("--every", type=float, default=10.0, help="sampling period, s")
    ap.add_argument("--max-growth", type=float, default=10.0, help="pass if RSS grows at most this %% after warm-up")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    warm_s = min(300.0, a.minutes * 60 / 3)
    with tempfile.TemporaryDirectory(prefix="vdbnb-soak-") as tmp:
        srv = Server(Path(tmp) / "data").start()
        samples: list[dict] = []
        t0 = time.time()
        try:
            res = run_sim(srv, a.minutes, samples, a.every) if a.sim else \
                run_rig(srv, a.minutes, Path(tmp) / "spool", samples, a.every)
            res["integrity_check"] = integrity_check(srv.data_dir)
        finally:
            srv.stop()
    wall = time.time() - t0
    out = {"minutes": a.minutes, "mode": "sim" if a.sim else "rig", "warmup_s": warm_s, "samples": len(samples),
           "wall_s": round(wall, 1), "server": summarize(samples, "server", warm_s),
           "recorder": summarize(samples, "recorder", warm_s), **res,
           "server_cpu_pct": round(100 * (samples[-1]["server_cpu_s"] - samples[0]["server_cpu_s"])
                                   / (samples[-1]["t"] - samples[0]["t"]), 1),
           "recorder_cpu_pct": round(100 * (samples[-1]["recorder_cpu_s"] - samples[0]["recorder_cpu_s"])
                                     / (samples[-1]["t"] - samples[0]["t"]), 1),
           "max_unacked": max(s["unacked"] for s in samples)}
    ok = (out["server"]["growth_pct"] <= a.max_growth and out["recorder"]["growth_pct"] <= a.max_growth
          and out["all_stored_in_order"] and out["integrity_check"] == "ok")
    out["pass"] = ok
    path = Path(a.out) if a.out else ROOT / "bench" / "results" / f"soak-{a.minutes:g}m{'-sim' if a.sim else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**out, "series": samples}, indent=1))
    print(json.dumps(out, indent=1))
    print(f"{'PASS' if ok else 'FAIL'}: server RSS {out['server']['rss_mb_after_warmup']} → "
          f"{out['server']['rss_mb_end']} MB ({out['server']['growth_pct']:+.1f} %), recorder "
          f"{out['recorder']['rss_mb_after_warmup']} → {out['recorder']['rss_mb_end']} MB "
          f"({out['recorder']['growth_pct']:+.1f} %) after {warm_s / 60:.0f} min warm-up; full JSON in {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
