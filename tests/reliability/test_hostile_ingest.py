"""Hostile input on the INGEST WEBSOCKET: malformed, truncated, replayed, conflicting and out-of-order
fragments for one channel while the other channels of the same session stream real media at real-time pace
on their own websocket. Each bad message gets a clear nack (stable error_code + a message that says what is
wrong), the connection stays usable, the streaming channels lose nothing and are not slowed down, and
nothing stored is corrupt: `PRAGMA integrity_check` is ok, every stored fragment decodes, the session exports."""
from __future__ import annotations

import asyncio
import json
import math
import struct
import httpx
import numpy as np
import pytest

from testkit.media import audio_fragments, video_fragments
from vdbnb.media.fragments import Fragment

from testkit.server import Server
from testkit.stored import db_fragments, decode_channel, integrity_check, new_session, stored
from testkit.wait import wait_until
from testkit.simrec import SimRecorder, Templates

GOOD = {"display:1": "video", "system_audio:default": "audio"}
TARGET = "mic:default"
STREAM_S = 14.0


def raw(header, payload: bytes = b"") -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack(">I", len(h)) + h + payload


def hostile_cases(good: list[Fragment], video: Fragment) -> list[tuple[str, bytes, str | None]]:
    """(name, message, expected error_code or None = must be acked)."""
    f0 = good[0]
    b0 = f0.pack()
    h = f0.header()
    other = audio_fragments(TARGET, 3.0, t0=f0.t0, freq=880.0)
    conflicting = Fragment(**{**other[1].__dict__})
    return [
        ("empty message", b"", "TRUNCATED"),
        ("3 bytes", b"\x00\x00\x01", "TRUNCATED"),
        ("cut inside the header", b0[:10], "TRUNCATED"),
        ("cut inside the payload", b0[:-3], "TRUNCATED"),
        ("header length 0", b"\x00\x00\x00\x00" + b0[4:], "TRUNCATED"),
        ("header length 4 GiB", b"\xff\xff\xff\xff" + b0[4:], "TRUNCATED"),
        ("header not JSON", raw(b"{not json", f0.payload), "BAD_HEADER"),
        ("header not UTF-8", raw(b"\xff\xfe\x00{", f0.payload), "BAD_HEADER"),
        ("header is a list", raw([1, 2, 3]), "BAD_HEADER"),
        ("header misses seq", raw({k: v for k, v in h.items() if k != "seq"}, f0.payload), "BAD_HEADER"),
        ("seq is text", raw({**h, "seq": "abc"}, f0.payload), "BAD_HEADER"),
        ("seq negative", raw({**h, "seq": -1}, f0.payload), "BAD_HEADER"),
        ("kind unknown", raw({**h, "kind": "smell"}, f0.payload), "BAD_HEADER"),
        ("t0 NaN", raw({**h, "t0": math.nan}, f0.payload), "BAD_TIMES"),
        ("t1 before t0", raw({**h, "t1": h["t0"] - 5}, f0.payload), "BAD_TIMES"),
        ("lasts 115 days", raw({**h, "t1": h["t0"] + 1e7}, f0.payload), "BAD_TIMES"),
        ("stamped next year", raw({**h, "t0": h["t0"] + 3e7, "t1": h["t1"] + 3e7}, f0.payload), "BAD_TIMES"),
        ("stamped in 2001", raw({**h, "t0": 1e9, "t1": 1e9 + 0.5}, f0.payload), "BAD_TIMES"),
        ("packet without size", raw({**h, "packets": [{"pts": h["t0"]}]}, f0.payload), "BAD_HEADER"),
        ("sizes exceed payload", raw({**h, "packets": f0.packets + [{"pts": h["t1"], "size": 999}]},
                                     f0.payload), "TRUNCATED"),
        ("compact sizes exceed payload", raw({**h, "packets": h["packets"] + [999]}, f0.payload), "TRUNCATED"),
        ("compact sizes mixed with dicts", raw({**h, "packets": h["packets"][:-1] + [{"size": h["packets"][-1]}]},
                                               f0.payload), "BAD_HEADER"),
        ("audio claims a gop_seq", raw({**h, "gop_seq": 0, "seq": 5}, f0.payload), "BAD_HEADER"),
        ("gop_seq not before seq", Fragment(**{**video.__dict__, "seq": 2, "gop_seq": 2}).pack(), "BAD_HEADER"),
        ("continuation holding a keyframe", Fragment(**{**video.__dict__, "seq": 2, "gop_seq": 1}).pack(),
         "BAD_MEDIA"),
        ("video on an audio channel", Fragment(**{**video.__dict__, "channel_id": TARGET}).pack(), "BAD_KIND"),
        ("channel not started", Fragment(**{**f0.__dict__, "channel_id": "mic:other"}).pack(), "UNKNOWN_CHANNEL"),
        ("17 MB fragment", raw(h, b"\x00" * (17 * 1024 * 1024)), "TOO_LARGE"),
        # the good ones, out of order and replayed: all acked, each stored once
        ("seq 3 first (out of order)", good[3].pack(), None),
        ("seq 0", b0, None),
        ("seq 0 replayed", b0, None),
        ("seq 2", good[2].pack(), None),
        ("seq 1, other media (first accepted bytes win)", conflicting.pack(), None),
        ("seq 1 again, the real bytes", good[1].pack(), None),
        ("seq 3 replayed", good[3].pack(), None),
    ]


@pytest.mark.slow
def test_hostile_fragments_on_the_ingest_websocket(tmp_path):
    srv = Server(tmp_path / "data").start()
    try:
        sid, tok = new_session(srv)
        chans = [{"channel_id": c, "type": k} for c, k in {**GOOD, TARGET: "audio"}.items()]
        httpx.post(f"{srv.url}/capture/session/start", headers={"x-access-token": tok},
                   json={"session_id": sid, "channels": chans}).raise_for_status()
        tpl = Templates(fps=2.0, size=(640, 360), video_s=6.0, audio_s=4.0)
        sim = SimRecorder(srv.url, sid, tok, GOOD, tpl, STREAM_S)
        good = audio_fragments(TARGET, 3.0)
        video = video_fragments("display:1", 2.0)[0]
        cases = hostile_cases(good, video)
        results = []

        async def hostile():
            from websockets.asyncio.client import connect
            await asyncio.sleep(2.0)   # the others are streaming
            url = srv.url.replace("http", "ws", 1) + f"/capture/session/{sid}/ingest"
            async with connect(url, additional_headers={"x-access-token": tok}, max_size=None,
                               compression=None) as ws:
                json.loads(await ws.recv())  # hello
                for name, msg, expect in cases:
                    await ws.send(msg)
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    results.append((name, expect, reply))
                    await ws.send("garbage text frame \x00")        # ignored, must not break anything
                    await asyncio.sleep(0.2)
                await ws.send(json.dumps({"type": "ping"}))
                pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert pong["type"] == "pong"
            async with connect(url, additional_headers={"x-access-token": tok}) as ws:
                return json.loads(await ws.recv())   # hello on a fresh connection: the high-water marks

        async def main():
            return await asyncio.gather(sim.run(), hostile())

        stats, hello = asyncio.run(main())
        bad = []
        for name, expect, reply in results:
            print(f"  {name:<75} -> {reply.get('type')} {reply.get('error_code') or ''} "
                  f"{'dup' if reply.get('duplicate') else ''} {reply.get('message', '')[:90]}")
            if expect is None:
                ok = reply.get("type") == "ack"
            else:
                ok = (reply.get("type") == "nack" and reply.get("error_code") == expect
                      and len(reply.get("message") or "") > 15)
            if not ok:
                bad.append((name, expect, reply))
        dups = [r for n, e, r in results if r.get("duplicate")]
        assert [r["seq"] for r in dups] == [0, 1, 3], dups
        assert hello["acked"][TARGET] == 3
        # the streaming channels: nothing lost, nothing rejected, not held up
        assert not stats.nacks and not sim.unacked
        lat = np.array(stats.latencies)
        print(f"  streaming channels: {sum(stats.produced.values())} fragments, all acked; ack latency p99 "
              f"{np.percentile(lat, 99) * 1e3:.0f} ms, max {lat.max() * 1e3:.0f} ms")
        assert lat.max() < 2.0
        in_db = db_fragments(srv.data_dir, sid)
        on_disk = stored(srv.data_dir, sid)
        for cid in GOOD:
            assert in_db[cid] == list(range(stats.produced[cid])) == [h["seq"] for h in on_disk[cid]]
        assert in_db[TARGET] == [0, 1, 2, 3] == [h["seq"] for h in on_disk[TARGET]]
        # stored once, and the first accepted bytes of seq 1 are what is kept (the replay did not overwrite)
        kept = {h["seq"]: open(h["path"], "rb").read() for h in on_disk[TARGET]}
        conflicting = [m for n, m, e in cases if n.startswith("seq 1, other media")][0]
        assert kept[1] == conflicting and kept[0] == good[0].pack()
        # nothing stored is corrupt
        assert integrity_check(srv.data_dir) == "ok"
        undecodable = []
        for cid, hs in on_disk.items():
            try:
                decode_channel([h["path"] for h in hs])
            except Exception as e:  # noqa: BLE001
                undecodable.append((cid, str(e)[:120]))
        print(f"  undecodable stored fragments: {undecodable}")
        httpx.post(f"{srv.url}/capture/session/{sid}/stop", headers={"x-access-token": tok}).raise_for_status()
        exp = f"{srv.url}/collection/default/capture/session/{sid}/export"
        done = wait_until(lambda: (lambda d: d if d["export_status"] in ("exported", "failed") else None)(
            httpx.post(exp, headers=srv.headers(), json={}).json()["data"]), 120, 0.5)
        print(f"  export: {done.get('export_status')} {done.get('error') or ''}")
        assert done["export_status"] == "exported", done
        assert not bad, bad
        assert not undecodable
    finally:
        srv.stop()


def test_payload_that_is_not_media_is_rejected(tmp_path):
    srv = Server(tmp_path / "data").start()
    try:
        sid, tok = new_session(srv)
        ch = {"x-access-token": tok}
        httpx.post(f"{srv.url}/capture/session/start", headers=ch, json={"session_id": sid, "channels": [
            {"channel_id": TARGET, "type": "audio"}, {"channel_id": "display:1", "type": "video"}]}).raise_for_status()
        rng = np.random.default_rng(1)
        replies = []
        for f in (audio_fragments(TARGET, 0.5)[0], video_fragments("display:1", 2.0)[0]):
            bad = Fragment(**{**f.__dict__, "payload": rng.integers(0, 256, len(f.payload), np.uint8).tobytes()})
            replies.append(httpx.post(f"{srv.url}/capture/session/{sid}/fragment", headers=ch, content=bad.pack()))
        assert all(r.status_code == 400 for r in replies), [r.text for r in replies]
    finally:
        srv.stop()
