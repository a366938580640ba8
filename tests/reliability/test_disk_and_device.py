"""Disk full and a device gone, mid-capture, with the real recorder on the rig:

* the server's data dir is a 48 MiB tmpfs mounted by the test (root) and filled up while recording: fragment
  writes fail with ENOSPC → the recorder gets a clear DISK_FULL nack, keeps every fragment in its spool (on
  another disk), the channels go on capturing; once space is freed the spooled fragments arrive, none lost;
* meanwhile the rig's microphone disappears (its PulseAudio module — module-remap-source `virtual_mic` of this
  rig instance — is unloaded): a `channel-lost` event + a CHANNEL_LOST error, the other channels go on;
* the database is not corrupted (`PRAGMA integrity_check`), every stored fragment decodes, the session stops
  normally. The module is loaded back and the tmpfs unmounted afterwards."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from vdbnb.capture import SyncCaptureClient

from testkit.server import Server
from testkit.stored import (db_fragments, decode_channel, gaps, integrity_check, new_session, session_row,
                            stored)
from testkit.wait import wait_until

CH = ["display:1", "mic:default", "system_audio:default"]
MIC_MODULE_ARGS = ["source_name=virtual_mic", "master=mic_feed.monitor",
                   "source_properties=device.description=Virtual_Microphone"]


def mic_module() -> str | None:
    out = subprocess.run(["pactl", "list", "short", "modules"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "module-remap-source" in line and "source_name=virtual_mic" in line:
            return line.split()[0]
    return None


def fill(path) -> int:
    """Write ``path`` until the filesystem is full (down to the last 512 bytes); returns bytes written."""
    n = 0
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512):
            buf = b"\xa5" * size
            while True:
                try:
                    n += os.write(fd, buf)
                except OSError:
                    break
    finally:
        os.close(fd)
    return n


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], capture_output=True)
        if r.returncode:
            subprocess.run(["umount", "-l", str(mnt)])


@pytest.fixture
def rig_mic(rig):
    assert mic_module(), "the rig's virtual_mic module is not loaded"
    yield
    if not mic_module():
        subprocess.run(["pactl", "load-module", "module-remap-source", *MIC_MODULE_ARGS], check=True,
                       capture_output=True)
        subprocess.run(["pactl", "set-default-source", "virtual_mic"], check=True)


@pytest.mark.slow
@pytest.mark.rig
def test_disk_full_and_mic_unplugged(request, rig, rig_mic, small_fs, tmp_path):
    spool = tmp_path / "spool"
    srv = Server(small_fs / "data").start()
    request.addfinalizer(srv.stop)   # even if the test fails before its own finally
    c = None
    filler = small_fs / "filler"
    try:
        sid, token = new_session(srv)
        c = SyncCaptureClient(token, srv.url)
        chans = [x for x in c.list_channels().all() if x.id in CH]
        c.start_session(sid, chans, spoolDir=str(spool), video={"skip_static": False, "fps": 2})
        time.sleep(4)
        filled = fill(filler)
        t_full = time.time()
        time.sleep(2)
        t_unplug = time.time()
        subprocess.run(["pactl", "unload-module", mic_module()], check=True)
        lost = c.wait_for("channel-lost", 15)
        t_lost = time.time()
        a = c.stats()
        time.sleep(6)
        b = c.stats()
        full_errors = [e.payload for e in c.events if e.event == "error"
                       and e.payload.get("code") in ("DISK_FULL", "STORAGE_ERROR")]
        health = srv.proc.poll() is None
        os.unlink(filler)
        t_free = time.time()
        drained = wait_until(lambda: not any(c.stats()["unacked"].values()), 60, 0.2)
        t_drain = time.time() - t_free
        left = c.stats()["unacked"]
        time.sleep(2)
        done = c.stop_session()
        events = list(c.events)
    finally:
        if c:
            c.shutdown()
    try:
        on_disk, in_db = stored(srv.data_dir, sid), db_fragments(srv.data_dir, sid)
        errs = sorted({(e.payload.get("code"), e.payload.get("channel_id")) for e in events if e.event == "error"})
        going_on = {cid: b["pipelines"][cid]["fragments"] - a["pipelines"][cid]["fragments"] for cid in CH}
        print(f"\nDISK FULL at +4 s ({filled >> 20} MiB filler), mic unplugged at +{t_unplug - t_full + 4:.0f} s "
              f"(channel-lost {t_lost - t_unplug:.1f} s later): "
              f"server alive {health}; {len(full_errors)} DISK_FULL/STORAGE_ERROR errors to the kernel, e.g. "
              f"{full_errors[0]['message'][:160] if full_errors else None!r}; fragments made in 6 s while full "
              f"{going_on}; unacked while full {b['unacked']}; after freeing: drained={drained} in "
              f"{t_drain:.1f}s, left {left}; "
              f"errors {errs}; lost {lost.payload}")
        assert lost.payload["channel_id"] == "mic:default" and lost.payload["reason"]
        assert ("CHANNEL_LOST", "mic:default") in errs
        assert going_on["display:1"] > 0 and going_on["system_audio:default"] > 0
        assert full_errors, "no clear disk-full error reached the kernel"
        assert health
        assert integrity_check(srv.data_dir) == "ok"
        for cid in CH:
            seqs = [h["seq"] for h in on_disk.get(cid, [])]
            assert seqs == in_db.get(cid, []), cid
            decode_channel([h["path"] for h in on_disk.get(cid, [])])
        assert session_row(srv, sid)["status"] == "stopped"
        # after space is freed the spooled fragments arrive: nothing lost
        missing = {cid: sorted(set(range(done["fragments"][cid])) - {h["seq"] for h in on_disk.get(cid, [])})
                   for cid in CH}
        print(f"  fragments made {done['fragments']}, missing on the server after freeing space: "
              f"{ {k: len(v) for k, v in missing.items()} }")
        assert drained and done["status"] == "complete" and not done["unacked"], done
        assert not any(missing.values()), missing
        assert not gaps(on_disk["system_audio:default"])
    finally:
        srv.stop()
