"""Bad input gives a clear error (exception or event) and the other channels go on."""
from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import pytest

from testkit import wait_for
from vdbnb.capture import SyncCaptureClient
from vdbnb.errors import CaptureError

from rigutil import backend_session, seqs, server_fragments


def test_unknown_channels(rig, server, spool_dir):
    sid, token = backend_session(server)
    c = SyncCaptureClient(token, server.url)
    try:
        with pytest.raises(CaptureError) as ei:
            c.start_session(sid, ["display:9", "mic:nope"], spoolDir=str(spool_dir))
        assert ei.value.code == "UNKNOWN_CHANNEL" and "display:9" in str(ei.value) and "available" in str(ei.value)
        # a mix: the known channel records, the unknown one is reported
        res = c.start_session(sid, ["display:1", "mic:nope"], spoolDir=str(spool_dir))
        assert [x["channel_id"] for x in res["skipped"]] == ["mic:nope"]
        ev = c.wait_for("error", 30, lambda e: e.payload.get("channel_id") == "mic:nope")
        assert ev.payload["code"] == "UNKNOWN_CHANNEL"
        # a second start is refused while recording
        with pytest.raises(CaptureError) as ei:
            c.start_session(sid, ["display:1"], spoolDir=str(spool_dir))
        assert ei.value.code == "ALREADY_RECORDING"
        wait_for(lambda: c.stats()["pipelines"]["display:1"]["fragments"] >= 1, 60, "a display:1 fragment")
        done = c.stop_session()
        assert done["status"] == "complete" and done["fragments"]["display:1"] >= 1
        # unknown track names for pause
        with pytest.raises(CaptureError):
            c.pause("camera")
    finally:
        c.shutdown()


def test_wrong_and_expired_token(rig, server, spool_dir):
    sid, _ = backend_session(server)
    c = SyncCaptureClient("st-not-a-token", server.url)
    try:
        with pytest.raises(CaptureError) as ei:
            c.start_session(sid, ["display:1"], spoolDir=str(spool_dir))
        assert ei.value.code == "AUTH_FAILED" and "token" in str(ei.value)
    finally:
        c.shutdown()
    t = httpx.post(server.url + "/capture/session/token", json={"expires_in": 1}, headers=server.headers())
    tok = t.json()["data"]["token"]
    time.sleep(2.2)  # the token's 1 s lifetime passes (a clock, not a wait for something to happen)
    c = SyncCaptureClient(tok, server.url)
    try:
        with pytest.raises(CaptureError) as ei:
            c.start_session(sid, ["display:1"], spoolDir=str(spool_dir))
        assert ei.value.code == "AUTH_FAILED"
    finally:
        c.shutdown()


def test_server_unreachable(rig, spool_dir):
    c = SyncCaptureClient("st-x", "http://127.0.0.1:9")
    try:
        with pytest.raises(CaptureError) as ei:
            c.start_session("cap-x", ["display:1"], spoolDir=str(spool_dir))
        assert ei.value.code == "SERVER_UNREACHABLE"
        assert c.ping()["pong"]  # the recorder is still fine
    finally:
        c.shutdown()


@pytest.mark.slow
def test_device_vanishes(rig, server, spool_dir):
    name = f"vdbnb_tmp_{uuid.uuid4().hex[:6]}"
    mod = subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={name}"], capture_output=True,
                         text=True, check=True).stdout.strip()
    sid, token = backend_session(server)
    c = SyncCaptureClient(token, server.url)
    try:
        ch = c.list_channels()
        tmp = ch.system_audio.get(f"system_audio:{name}.monitor")
        assert tmp is not None, [x.id for x in ch.system_audio]
        c.start_session(sid, [ch.displays.get("display:1"), ch.mics.default, tmp], spoolDir=str(spool_dir),
                        video={"skip_static": False})
        wait_for(lambda: all(c.stats()["pipelines"][cid]["fragments"] >= 1 for cid in ("display:1", "mic:default")),
                 60, "the recording under way")
        subprocess.run(["pactl", "unload-module", mod], check=True)
        mod = None
        lost = c.wait_for("channel-lost", 60)
        assert lost.payload["channel_id"] == tmp.id and lost.payload["reason"]
        err = c.wait_for("error", 30, lambda e: e.payload.get("code") == "CHANNEL_LOST")
        assert tmp.id in err.payload["message"]
        before = c.stats()["pipelines"]
        # the others go on
        wait_for(lambda: all(c.stats()["pipelines"][cid]["fragments"] > before[cid]["fragments"]
                             for cid in ("display:1", "mic:default")), 60, "new fragments on the other channels")
        done = c.stop_session()
    finally:
        if mod:
            subprocess.run(["pactl", "unload-module", mod])
        c.shutdown()
    assert done["status"] == "complete" and tmp.id in done["lost_channels"]
    on_server = server_fragments(server.data_dir, sid)
    for cid in ("display:1", "mic:default", tmp.id):
        s = seqs(on_server[cid])
        assert s == list(range(len(s))), cid
