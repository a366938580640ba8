"""Load: 16 concurrent capture sessions on this box (server `vdbnb serve --no-ai`), each a simulated recorder
sending real H.264 (1 display at 1 fps, 1920x1080) and real Opus (mic + system audio) fragments at real-time
pace over the ingest websocket for 30 s. Nothing is lost: every fragment acked, stored once, indexed, in order.

Figures are printed (run with -s) and quoted in docs/reliability.md."""
from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from testkit.procs import cpu_s, rss_kb
from testkit.server import Server
from testkit.stored import db_fragments, integrity_check, new_session, session_row, stored
from testkit.simrec import SimRecorder, Templates

SESSIONS = int(os.environ.get("VDBNB_LOAD_SESSIONS", "16"))
SECONDS = float(os.environ.get("VDBNB_LOAD_SECONDS", "30"))
CHANNELS = {"display:1": "video", "mic:default": "audio", "system_audio:default": "audio"}


@pytest.mark.slow
def test_16_sessions_realtime_no_loss(tmp_path):
    tpl = Templates(fps=1.0)
    srv = Server(tmp_path / "data").start()
    try:
        pairs = [new_session(srv) for _ in range(SESSIONS)]
        recs = [SimRecorder(srv.url, sid, tok, CHANNELS, tpl, SECONDS) for sid, tok in pairs]
        pid = srv.proc.pid
        samples = []

        async def sample():
            while True:
                samples.append((time.time(), cpu_s(pid), rss_kb(pid)))
                await asyncio.sleep(1.0)

        async def main():
            await asyncio.gather(*(r.start() for r in recs))
            s = asyncio.create_task(sample())
            t = time.time()
            stats = await asyncio.wait_for(asyncio.gather(*(r.run() for r in recs)), SECONDS + 120)
            wall = time.time() - t
            s.cancel()
            await asyncio.gather(*(r.stop() for r in recs))
            return stats, wall

        stats, wall = asyncio.run(main())
        lat = np.array([x for s in stats for x in s.latencies])
        produced = sum(sum(s.produced.values()) for s in stats)
        acked = sum(sum(len(v) for v in s.acked.values()) for s in stats)
        nacks = [n for s in stats for n in s.nacks]
        cpu = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
        mb = sum(s.bytes for s in stats) / 1e6
        print(f"\nLOAD {SESSIONS} sessions x {len(CHANNELS)} channels x {SECONDS:.0f}s: {produced} fragments "
              f"({mb:.1f} MB) produced, {acked} acked, {len(nacks)} nacks, reconnects "
              f"{sum(s.reconnects for s in stats)}, wall {wall:.1f}s; ack latency p50 {np.percentile(lat, 50)*1e3:.0f} ms "
              f"p99 {np.percentile(lat, 99)*1e3:.0f} ms max {lat.max()*1e3:.0f} ms; server CPU {cpu*100:.0f}% of one "
              f"core, RSS {samples[-1][2]/1024:.0f} MB")
        assert not nacks, nacks[:5]
        assert acked == produced
        for (sid, _), s, r in zip(pairs, stats, recs):
            assert not r.unacked, (sid, len(r.unacked))
            on_disk = stored(srv.data_dir, sid)
            in_db = db_fragments(srv.data_dir, sid)
            for cid in CHANNELS:
                n = s.produced[cid]
                assert n >= (SECONDS / 2 if CHANNELS[cid] == "video" else SECONDS * 2) - 2, (sid, cid, n)
                assert in_db[cid] == list(range(n)), (sid, cid)
                assert [h["seq"] for h in on_disk[cid]] == list(range(n)), (sid, cid)
            assert session_row(srv, sid)["status"] == "stopped"
        assert integrity_check(srv.data_dir) == "ok"
        assert np.percentile(lat, 99) < 2.0, "acks fell behind real time"
    finally:
        srv.stop()
