"""Claims on a real PostgreSQL: export jobs and stream leases claimed by several holders at once (FOR UPDATE
SKIP LOCKED) end up with one holder each, an expired claim moves to another holder and the old one can write
nothing more; a role holder notices that PostgreSQL restarted without using its role."""
from __future__ import annotations

import threading

import pytest

from testkit.backend import Backend
from testkit.wait import wait_until
from vdbnb.server.jobs import DONE, QUEUED, RUNNING, Jobs
from vdbnb.server.notify import PgNotifier
from vdbnb.server.pipelines.leases import Leases
from vdbnb.server.store import now
from vdbnb.server.store_pg import PostgresStore


@pytest.fixture
def stores():
    """Open stores on one fresh database (each its own pool, like separate processes); closed after."""
    url = Backend("postgresql").database_url
    made = []

    def make() -> PostgresStore:
        made.append(PostgresStore(url, max_size=4))
        return made[-1]
    yield make
    for s in made:
        s.close()


def _jobs(store, holder: str, lease_s: float = 30.0) -> Jobs:
    return Jobs(store, PgNotifier(store), holder, lease_s, runners={})


def test_export_jobs_each_claimed_once_by_concurrent_runners(stores):
    first = _jobs(stores(), "submitter")
    ids = [f"clip:{i:03d}" for i in range(24)]
    for jid in ids:
        first.submit(jid, "clip", {"n": jid})
    assert first.submit(ids[0], "clip", {"n": ids[0]})["status"] == QUEUED  # asked again: queued once
    runners = [_jobs(stores(), f"runner-{i}") for i in range(4)]
    got: dict[str, list[str]] = {r.holder: [] for r in runners}
    start = threading.Barrier(len(runners))

    def drain(r: Jobs):
        start.wait()
        while (job := r.claim()) is not None:
            got[r.holder].append(job["id"])
    threads = [threading.Thread(target=drain, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [j for js in got.values() for j in js]
    assert sorted(claimed) == ids  # every job claimed, none twice
    rows = first.store.all("SELECT id, holder, status, attempts FROM export_jobs ORDER BY id")
    assert all(r["status"] == RUNNING and r["attempts"] == 1 for r in rows)
    assert {r["id"]: r["holder"] for r in rows} == {j: h for h, js in got.items() for j in js}


def test_an_expired_export_job_moves_to_another_runner(stores):
    a, b = _jobs(stores(), "runner-a", lease_s=1.0), _jobs(stores(), "runner-b", lease_s=1.0)
    a.submit("session:s1", "session", {})
    job = a.claim()
    assert job["id"] == "session:s1" and job["holder"] == "runner-a"
    assert b.claim() is None  # held, not expired: nobody else gets it
    # runner-a stops renewing (as if it died); after its lease it is runner-b's
    assert wait_until(lambda: (b.claim() or {}).get("holder") == "runner-b", 10)
    row = b.get("session:s1")
    assert row["holder"] == "runner-b" and row["attempts"] == 2
    assert not a._held("session:s1", progress=0.5)  # the old holder can write nothing
    assert b._held("session:s1", status=DONE, result={"video_id": "m-1"})
    assert b.get("session:s1")["result"] == {"video_id": "m-1"}
    assert b.submit("session:s1", "session", {})["status"] == DONE  # done with these params: not queued again
    assert b.submit("session:s1", "session", {"video_channel_id": "display:2"})["status"] == QUEUED


def test_stream_leases_have_one_holder_and_expire(stores):
    streams = [f"rts-{i}" for i in range(12)]
    holders = [Leases(stores(), f"worker-{i}", lease_s=1.5) for i in range(3)]
    held: dict[str, set[str]] = {}
    start = threading.Barrier(len(holders))

    def claim(lz: Leases):
        start.wait()
        held[lz.holder] = lz.claim("transcript", streams)
    threads = [threading.Thread(target=claim, args=(lz,)) for lz in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    sets = list(held.values())
    assert set().union(*sets) == set(streams)
    assert sum(len(s) for s in sets) == len(streams)  # disjoint: one holder per stream
    # claiming again keeps what one holds and takes nothing another holds
    for lz in holders:
        assert lz.claim("transcript", streams) == held[lz.holder]
    # the holder of the most streams stops renewing (dies): after the lease the others share its streams
    dead = max(holders, key=lambda lz: len(held[lz.holder]))
    orphans = held[dead.holder]
    live = [lz for lz in holders if lz is not dead]

    def taken() -> bool:
        for lz in live:
            held[lz.holder] = lz.claim("transcript", streams)
        return orphans <= set().union(*(held[lz.holder] for lz in live))
    assert wait_until(taken, 10)
    rid = next(iter(orphans))
    assert not dead.advance(rid, "transcript", 5)  # the dead holder cannot move the cursor
    owner = next(lz for lz in live if rid in held[lz.holder])
    assert owner.advance(rid, "transcript", 5)
    rows = owner.store.all("SELECT holder FROM stream_leases WHERE pipeline='transcript' AND expires_at > ?",
                           (now(),))
    assert {r["holder"] for r in rows} <= {lz.holder for lz in live}


def test_a_role_holder_notices_a_database_restart_without_using_the_role():
    from testkit.engines import Postgres
    pg = Postgres().start()  # its own server: restarted below
    store = None
    try:
        store = PostgresStore(pg.new_database("roles"), max_size=2)
        role = store.try_lock("outbox")
        assert role is not None and role.held()
        assert store.try_lock("outbox") is None  # one holder
        pg.stop(keep=True)  # PostgreSQL restarts: every session, and the advisory lock with it, ends
        pg.start()
        # nothing uses the role meanwhile: its heartbeat finds out
        assert wait_until(lambda: not role.held(), 10), "the holder still believes it holds the role"
        assert wait_until(lambda: store.try_lock("outbox") is not None, 20)  # free to be taken again
    finally:
        if store is not None:
            store.close()
        pg.stop()
