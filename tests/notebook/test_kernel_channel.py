"""The kernel channel inside a real IPython kernel (jupyter_client), recording into a real server through the
real recorder process: what a cell's event holds, the ways to keep a cell private, secrets redacted before
they leave the kernel, and no cell lost when the server dies and comes back mid-session."""
from __future__ import annotations

import ast
import json
import os
import time
import uuid

import pytest

from tests.conftest import ROOT

jupyter_client = pytest.importorskip("jupyter_client")


class Kernel:
    """A python3 kernel whose vdbnb talks to ``server``; ``run(code)`` returns (status, text of the outputs)."""

    def __init__(self, server):
        from jupyter_client.manager import start_new_kernel
        env = {**os.environ, "VDBNB_URL": server.url, "VDBNB_API_KEY": server.api_key,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env)

    def run(self, code: str, metadata: dict | None = None, timeout: float = 120) -> tuple[str, str]:
        kc = self.kc
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": False}
        msg = kc.session.msg("execute_request", content, metadata=metadata or {})   # as JupyterLab sends it
        kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        out = []
        while True:
            m = kc.get_iopub_msg(timeout=timeout)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            t, c = m["msg_type"], m["content"]
            if t == "status" and c["execution_state"] == "idle":
                break
            if t == "stream":
                out.append(c["text"])
            elif t in ("execute_result", "display_data"):
                out.append(str(c["data"].get("text/plain")))
            elif t == "error":
                out.append(f"{c['ename']}: {c['evalue']}")
        while True:
            reply = kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"], "".join(out)

    def ok(self, code: str, **kw) -> str:
        status, out = self.run(code, **kw)
        assert status == "ok", out
        return out

    def close(self):
        try:
            self.run("client.shutdown()", timeout=60)
        except Exception:  # noqa: BLE001
            pass
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(server):
    k = Kernel(server)
    yield k
    k.close()


START = """
import vdbnb
conn = vdbnb.connect()
cap = conn.create_capture_session(end_user_id="kernel-test")
client = vdbnb.CaptureClient.sync(conn.generate_client_token(600), base_url=conn.base_url)
channels = client.list_channels()
kc = channels.kernels.default
kc.private = {private}
client.start_session(cap.id, [kc])
print(kc.id, kc.type)
"""


def cells_of(kernel) -> list[dict]:
    out = kernel.ok("import json\nprint(json.dumps([e.row() for e in cap.events() if e.channel == 'kernel']))")
    return json.loads(out)


def test_list_channels_offers_the_kernel_only_inside_one(kernel, server):
    from vdbnb.capture.client import Channels
    assert kernel.ok(START.format(private=False)).split() == ["kernel:current", "kernel"]
    assert isinstance(Channels().kernels, list) and not Channels().kernels
    # outside a kernel (this test process) there is no kernel channel, and asking for one says why
    from vdbnb.capture.kernel import KernelRecorder
    with pytest.raises(RuntimeError, match="IPython kernel"):
        KernelRecorder(server.url, "st-x", "cap-x")


def test_what_a_cell_event_holds(kernel):
    kernel.ok(START.format(private=False))
    before = time.time()
    kernel.ok("x = 6 * 7\nprint('hello from the cell', x)\nx")
    status, out = kernel.run("from IPython.display import display, HTML\ndisplay(HTML('<b>bold</b>'))\n"
                             "orders = {'id': [1, 2]}\norders['customer_id']")
    assert status == "error" and "KeyError" in out
    status, _ = kernel.run("def broken(:\n    pass")
    assert status == "error"
    kernel.ok("%%capture captured\nprint('inside capture')\n1 + 1")      # a nested run_cell: one cell
    after = time.time()
    kernel.ok("r = client.stop_session()\nprint(r['kernel']['complete'], r['kernel']['cells'])")
    cells = cells_of(kernel)
    assert len(cells) == 4, [c["text"] for c in cells]
    ok, err, syntax, nested = cells
    assert ok["event"] == "cell" and ok["label"] == "ok" and ok["text"].startswith("x = 6 * 7")
    assert before <= ok["start"] <= ok["end"] <= after
    outs = ok["data"]["outputs"]
    assert {"output_type": "stream", "name": "stdout", "mime_types": ["text/plain"],
            "text": "hello from the cell 42\n"} in outs
    assert {"output_type": "execute_result", "mime_types": ["text/plain"], "text": "42"} in outs
    assert ok["data"]["execution_count"] + 1 == err["data"]["execution_count"]
    assert err["label"] == "error" and err["data"]["ename"] == "KeyError"
    assert err["data"]["evalue"] == "'customer_id'" and err["data"]["error"] == "KeyError: 'customer_id'"
    assert "orders['customer_id']" in err["data"]["traceback"] and "interactiveshell" not in err["data"]["traceback"]
    assert any(o["output_type"] == "display_data" and "text/html" in o["mime_types"] for o in err["data"]["outputs"])
    assert ok["end"] <= err["start"] <= err["end"] <= syntax["start"]
    assert syntax["data"]["ename"] == "SyntaxError" and syntax["label"] == "error"
    assert nested["text"].startswith("%%capture") and nested["label"] == "ok"


def test_private_cells_leave_only_that_they_ran(kernel, server):
    kernel.ok("%load_ext vdbnb")
    kernel.ok(START.format(private=False))
    secret = "moonbeam-" + uuid.uuid4().hex[:8]
    kernel.ok(f"%%vdbnb_private\nnote = '{secret} by magic'\nprint(note)")
    kernel.ok(f"note2 = '{secret} by tag'\nprint(note2)", metadata={"tags": ["vdbnb-private"], "cellId": "c1"})
    kernel.ok("%vdbnb_private on")
    kernel.ok(f"note3 = '{secret} in a private stretch'\nprint(note3)")
    kernel.ok("%vdbnb_private off")
    kernel.ok("print('public again')", metadata={"tags": ["other-tag"], "cellId": "c2"})
    kernel.ok("client.stop_session()")
    cells = cells_of(kernel)
    # the "off" cell itself still ran in the private stretch
    assert [c["label"] for c in cells] == ["private", "private", "ok", "private", "private", "ok"], cells
    for c in cells:
        if c["label"] == "private":
            assert c["text"] == "a private cell ran" and set(c["data"]) == {"private", "duration", "seq"}
    assert cells[-1]["data"]["cell_id"] == "c2" and "public again" in cells[-1]["data"]["outputs"][0]["text"]
    # nowhere on the server: not in the database, the search index or the stored fragments
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    # a capture started with the channel private keeps every cell private
    kernel.ok(START.format(private=True))
    kernel.ok(f"print('{secret}')")
    kernel.ok("client.stop_session()")
    assert [c["label"] for c in cells_of(kernel)] == ["private"]


def test_secrets_are_redacted_in_the_kernel(kernel, server):
    kernel.ok(START.format(private=False))
    key = "sk-proj-" + uuid.uuid4().hex + "Zq9"
    kernel.ok(f"api_key = '{key}'\nprint('using', api_key)")
    kernel.ok("client.stop_session()")
    (c,) = cells_of(kernel)
    assert key not in json.dumps(c) and "[api_key redacted]" in c["text"] and c["data"]["redacted"] == ["api_key"]
    assert "[api_key redacted]" in c["data"]["outputs"][0]["text"]
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_no_cell_is_lost_when_the_server_dies_and_comes_back(kernel, server):
    kernel.ok(START.format(private=False))
    kernel.ok("step = 'before the outage'")
    time.sleep(0.5)
    server.kill()                                    # SIGKILL: the kernel's sends fail from here
    t0 = time.time()
    for i in range(3):
        kernel.ok(f"step = 'during the outage {i}'")  # the cells run as fast as ever; they wait in the kernel
    during = time.time() - t0
    out = kernel.ok("import time\nrec = client.client.kernel_recorder\nend = time.time() + 30\n"
                    "while len(rec.report()['unacked']) < 3 and time.time() < end:\n    time.sleep(0.1)\n"
                    "print(rec.report())")
    rep = ast.literal_eval(out.strip())
    # (cell 0 may be unacknowledged too: the server can die after storing it, before its answer)
    assert {1, 2, 3} <= set(rep["unacked"]) and "cannot reach the server" in rep["last_error"], rep
    server.start()                                   # same data dir, same port
    kernel.ok("step = 'after the outage'")
    out = kernel.ok("r = client.stop_session(drain_timeout=30)\nprint(r['kernel'])")
    assert "'complete': True" in out and "'unacked': []" in out, out
    cells = cells_of(kernel)
    assert [c["text"] for c in cells if c["text"].startswith("step")] == ["step = 'before the outage'"] + [
        f"step = 'during the outage {i}'" for i in range(3)] + ["step = 'after the outage'"]
    assert [c["data"]["seq"] for c in cells] == list(range(6))   # the 5 steps and the cell that looked
    print(f"3 cells during the outage ran in {during:.2f} s (with their round trips)")
