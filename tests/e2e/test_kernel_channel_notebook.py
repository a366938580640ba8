"""The kernel channel end to end on the rig: a notebook executed by nbclient in a real kernel starts a capture
with the primary display, the microphone and the kernel channel, speaks into the microphone while one cell
succeeds and while another one raises, runs a private cell, and stops. Checked from outside, against the
server and against nbclient's own record of when each cell ran:

- the failing cell's event has the exception's name and message, and times within the cell's run;
- searching its error text finds it first (on the kernel stream and across the collection);
- ``events_df()`` and ``context()`` join it with the transcript of what was said while it ran (and a clip);
- the private cell left only "a private cell ran": its text is nowhere in the server's data.

The sentences and the missing column are drawn at random from a pool the tutorial does not use (the seed is
printed), so the checks cannot lean on one phrasing.
"""
from __future__ import annotations

import json
import os
import random
import re
import uuid
from datetime import datetime

import httpx
import pytest

from testkit import wait_for
from tests.conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.slow, pytest.mark.rig]

SAID_OK = ["We start by counting the parcels that left the depot this morning.",
           "First the rainfall readings are averaged for every weather station.",
           "I begin by listing the tickets that were closed during the weekend."]
SAID_FAILING = [("Next I merge the invoices with the vendor list to find late payments.", "vendor_code"),
                ("Now I join the shipments with the warehouse table by its code.", "warehouse_id"),
                ("This step matches the survey answers to the region lookup table.", "region_key"),
                ("Then the patient visits are linked to the clinic register.", "clinic_ref")]


def words(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


def notebook(url: str, key: str, sid: str, said_ok: str, said_fail: str, column: str, secret: str):
    md = nbformat.v4.new_code_cell
    cells = [
        md(f"""import os, json, time
import vdbnb
from rig.tutorial import say, wait
conn = vdbnb.connect(api_key={key!r}, base_url={url!r})
session = conn.get_capture_session({sid!r})
client = vdbnb.CaptureClient.sync(conn.generate_client_token(expires_in=600), base_url=conn.base_url)
ch = client.list_channels()
chans = [ch.displays.primary, ch.mics.default, ch.kernels.default]
for c in chans:
    c.store = True
client.start_session(session.id, chans)
session.wait_for("active", timeout=30)
session.get_rtstream("mic")[0].start_transcript()"""),
        md(f"""say({said_ok!r})
totals = {{"north": 12, "south": 30}}
sum(totals.values())"""),
        md(f"""say({said_fail!r})
rows = {{"id": [1, 2, 3]}}
rows[{column!r}]"""),
        md(f"""%%vdbnb_private
note = {secret!r}
print(note)"""),
        md("""wait(6, "the last words reach the transcript")
result = client.stop_session()
client.shutdown()
print(json.dumps(result["kernel"]))"""),
    ]
    cells[2].metadata["tags"] = ["raises-exception"]
    return nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})


def ran(cell) -> tuple[float, float]:
    """When nbclient saw the cell run: its execute_input and its execute_reply (epoch seconds)."""
    ex = cell.metadata["execution"]
    t = [datetime.fromisoformat(ex[k].replace("Z", "+00:00")).timestamp()
         for k in ("iopub.execute_input", "shell.execute_reply")]
    return t[0], t[1]


def test_a_notebook_run_on_the_rig_records_its_cells_beside_what_was_said(rig, server, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    import vdbnb

    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    said_ok = rnd.choice(SAID_OK)
    said_fail, column = rnd.choice(SAID_FAILING)
    secret = "opal-" + uuid.uuid4().hex[:10]
    print(f"seed {seed}: {said_fail!r} while rows[{column!r}] fails")

    conn = vdbnb.connect(api_key=server.api_key, base_url=server.url)
    cap = conn.create_capture_session(end_user_id="e2e-kernel")
    nb = notebook(server.url, server.api_key, cap.id, said_ok, said_fail, column, secret)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=False, record_timing=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    report = json.loads(nb.cells[4].outputs[-1]["text"].strip().splitlines()[-1])
    # recorded: the ok, failing and private cells (the cell that starts the capture began before it, the one
    # that stops it is still running when it ends)
    assert report["complete"] and report["cells"] == 3, report

    events = cap.refresh().events_df()
    cells = events[events["kind"] == "cell"].sort_values("start").reset_index(drop=True)
    assert list(cells["label"]) == ["ok", "error", "private"], cells[["label", "text"]]
    ok_ev, err_ev, priv_ev = (cells.iloc[i] for i in range(3))

    # the failing cell: its exception, and times inside the run nbclient saw (the kernel stamps its own clock)
    d = err_ev["data"]
    assert d["ename"] == "KeyError" and column in d["evalue"] and d["status"] == "error"
    t_in, t_out = ran(nb.cells[2])
    assert t_in - 0.5 <= err_ev["start"] <= err_ev["end"] <= t_out + 0.5, (t_in, err_ev["start"], err_ev["end"], t_out)
    ok_in, ok_out = ran(nb.cells[1])
    assert ok_in - 0.5 <= ok_ev["start"] <= ok_ev["end"] <= ok_out + 0.5 and ok_ev["end"] <= err_ev["start"]

    # searching its error text finds it first, on the kernel stream and across the collection
    query = f"KeyError {column}"
    rts = cap.get_rtstream("kernel")[0]
    hit = wait_for(lambda: rts.search(query).shots, 60, f"a search hit for {query!r}", step=1.0)[0]
    assert hit.kind == "cell" and abs(hit.start - err_ev["start"]) < 1e-3 and column in hit.text
    top = conn.get_collection().search(query).shots[0]
    assert top.kind == "cell" and top.session_id == cap.id and abs(top.start - err_ev["start"]) < 1e-3

    # events_df and context join it with what was said while it ran
    said = events[(events["kind"] == "transcript") & events["is_final"].fillna(False).astype(bool)]
    during = said[(said["end"] >= err_ev["start"]) & (said["start"] <= err_ev["end"])]
    assert len(words(said_fail) & words(" ".join(during["text"]))) / len(words(said_fail)) >= 0.6, \
        (said_fail, list(said["text"]))
    ctx = cap.context(err_ev)
    heard = " ".join(ctx.loc[(ctx["when"] == "during") & (ctx["kind"] == "transcript"), "text"])
    overlap = len(words(said_fail) & words(heard)) / len(words(said_fail))
    print(f"context of the failing cell: {overlap:.0%} of {said_fail!r} in {heard!r}")
    assert overlap >= 0.6
    ok_only = words(said_ok) - words(said_fail)    # what was said during the other cell is "before", not "during"
    assert len(ok_only & words(heard)) <= 0.3 * len(ok_only), heard
    clip = httpx.get(ctx.attrs["clip_url"], timeout=120)
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4" and len(clip.content) > 1000

    # the private cell: only that it ran
    assert priv_ev["text"] == "a private cell ran" and set(priv_ev["data"]) == {"private", "duration", "seq"}
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
