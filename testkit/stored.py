"""What a server stored, seen from outside: backend calls with the API key (a session, its row), the fragment
files on disk and their rows in SQLite, gaps in a channel's timeline, strict decoding of a stored fragment."""
from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

import httpx


def new_session(server, callback_url: str | None = None, collection: str = "default") -> tuple[str, str]:
    """(session id, client token) as a backend makes them with the API key."""
    h = server.headers()
    body = {"end_user_id": "reliability"}
    if callback_url:
        body["callback_url"] = callback_url
    r = httpx.post(f"{server.url}/collection/{collection}/capture/session", json=body, headers=h, timeout=10)
    r.raise_for_status()
    sid = r.json()["data"]["session_id"]
    t = httpx.post(f"{server.url}/capture/session/token", json={"expires_in": 86400}, headers=h, timeout=10)
    t.raise_for_status()
    return sid, t.json()["data"]["token"]


def session_row(server, sid: str) -> dict:
    r = httpx.get(f"{server.url}/collection/default/capture/session/{sid}", headers=server.headers(), timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def frag_header(b: bytes) -> dict:
    (n,) = struct.unpack(">I", b[:4])
    return json.loads(b[4:4 + n])


def stored(data_dir: Path, sid: str) -> dict[str, list[dict]]:
    """channel_id -> headers of the fragment files stored for the session, sorted by seq."""
    out: dict[str, list[dict]] = {}
    base = Path(data_dir) / "media" / sid
    if not base.exists():
        return out
    for p in base.rglob("*.frag"):
        h = frag_header(p.read_bytes())
        h["path"] = str(p)
        out.setdefault(h["channel_id"], []).append(h)
    for v in out.values():
        v.sort(key=lambda h: h["seq"])
    return out


def db_fragments(data_dir: Path, sid: str) -> dict[str, list[int]]:
    """channel_id -> seqs indexed in SQLite (read-only connection; fine while the server runs, WAL)."""
    con = sqlite3.connect(f"file:{Path(data_dir) / 'vdbnb.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT r.source_channel_id, f.seq FROM fragments f JOIN rtstreams r "
                           "ON r.id = f.rtstream_id WHERE r.session_id=? ORDER BY f.seq", (sid,)).fetchall()
    finally:
        con.close()
    out: dict[str, list[int]] = {}
    for cid, seq in rows:
        out.setdefault(cid, []).append(seq)
    return out


def integrity_check(data_dir: Path) -> str:
    con = sqlite3.connect(f"file:{Path(data_dir) / 'vdbnb.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def gaps(headers: list[dict], tol: float = 0.15) -> list[tuple[float, float]]:
    """Holes in a channel's timeline: (end of one fragment, start of the next) further apart than ``tol`` s."""
    out = []
    for a, b in zip(headers, headers[1:]):
        if b["t0"] - a["t1"] > tol:
            out.append((a["t1"], b["t0"]))
    return out


def decode_channel(paths) -> list[tuple[int, int]]:
    """Decode one channel's stored fragments strictly, in seq order: [(packets, decoded frames)] per fragment.
    Video goes through ONE decoder, as a player does: a fragment continuing a GOP (``gop_seq``) decodes on the
    pictures of the fragments before it, so its GOP must be there, from its keyframe on. Raises on any decoder
    error, a continuation whose GOP is not all there, or a fragment that decodes to fewer frames than packets."""
    import av

    from vdbnb.media.fragments import unpack
    out, dec, last = [], None, None
    for path in paths:
        f = unpack(Path(path).read_bytes())
        if f.codec == "opus":
            dec = av.CodecContext.create("libopus", "r")
            dec.sample_rate = int(f.codec_info.get("sample_rate", 48000))
            dec.layout = "mono" if int(f.codec_info.get("channels", 1)) == 1 else "stereo"
        elif f.gop_seq is None:
            dec = av.CodecContext.create("h264", "r")
            dec.thread_count = 1  # a packet's picture comes out at once
        elif last != f.seq - 1 or dec is None:
            raise ValueError(f"{path}: continues the GOP of #{f.gop_seq} but #{f.seq - 1} was not decoded before it")
        frames = sum(len(dec.decode(av.Packet(b))) for _, b in f.packet_bytes())
        if frames < len(f.packets):
            raise ValueError(f"{path}: {len(f.packets)} packets decoded to {frames} frames")
        out.append((len(f.packets), frames))
        last = f.seq
    return out
