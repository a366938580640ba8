"""`bash scripts/run.sh --check`: start JupyterLab as run.sh does, check what a user would get, stop it.

Checks, against the real server on a free 127.0.0.1 port:
1. JupyterLab answers and serves the quickstart notebook (GET /api/contents/notebooks/01-quickstart.ipynb);
2. the lab page itself is served (GET /lab);
3. a kernel started by that server (the python3 kernel the notebook uses) imports vdbnb and loads the panel's
   front end, the JavaScript + CSS that anywidget sends to the browser (CapturePanel's bundle).
Then the kernel is shut down and the lab stopped (by pid: its process group). Exit 0 when all passed.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01-quickstart.ipynb"
PROBE = """import json, vdbnb
from vdbnb.widgets.panel import _bundle
js, css = _bundle()
print(json.dumps({"vdbnb": vdbnb.__version__, "js": len(js), "css": len(css), "esm": "export" in js}))"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(ok: bool, what: str) -> bool:
    print(f"[check] {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    return ok


def run_in_kernel(base: str, token: str, code: str, timeout: float = 120) -> str:
    """Start a python3 kernel through the lab's REST API, run ``code`` over its websocket, return stdout."""
    from websockets.sync.client import connect
    h = {"Authorization": f"token {token}"}
    kid = httpx.post(f"{base}/api/kernels", json={"name": "python3"}, headers=h, timeout=30).json()["id"]
    try:
        ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kid}/channels?token={token}"
        with connect(ws_url, open_timeout=30, max_size=None) as ws:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "check", "session": uuid.uuid4().hex,
                           "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            out, deadline = [], time.time() + timeout
            while time.time() < deadline:
                raw = ws.recv(timeout=max(1.0, deadline - time.time()))
                if isinstance(raw, bytes):    # binary frames (widget buffers) are not the replies we wait for
                    continue
                m = json.loads(raw)
                if m.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                t = m["header"]["msg_type"]
                if t == "stream":
                    out.append(m["content"]["text"])
                elif t == "error":
                    raise RuntimeError("\n".join(m["content"]["traceback"])[-3000:])
                elif t == "execute_reply":
                    if m["content"]["status"] != "ok":
                        raise RuntimeError(f"kernel: {m['content']}")
                    return "".join(out)
            raise TimeoutError("the kernel did not answer in time")
    finally:
        httpx.delete(f"{base}/api/kernels/{kid}", headers=h, timeout=30)


def main() -> int:
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="vdbnb-check-"))
    log = work / "jupyter-lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "ws"),
           "VDBNB_DATA_DIR": str(work / "data")}
    cmd = [sys.executable, "-m", "jupyter", "lab", NOTEBOOK, "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    print(f"[check] {' '.join(cmd[1:4])} ... on {base}", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    ok = True
    try:
        h = {"Authorization": f"token {token}"}
        deadline = time.time() + 180
        up = False
        while time.time() < deadline and proc.poll() is None and not up:
            try:
                up = httpx.get(f"{base}/api/status", headers=h, timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.3)
        if not say(up, f"JupyterLab answers on {base}"):
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        r = httpx.get(f"{base}/api/contents/{NOTEBOOK}", headers=h, timeout=30)
        cells = r.json().get("content", {}).get("cells", []) if r.status_code == 200 else []
        src = "".join("".join(c.get("source", "")) for c in cells)
        ok &= say(r.status_code == 200 and "CapturePanel" in src and "%load_ext vdbnb" in src,
                  f"serves {NOTEBOOK} ({len(cells)} cells)")
        r = httpx.get(f"{base}/lab", headers=h, timeout=30)
        ok &= say(r.status_code == 200 and "JupyterLab" in r.text, "serves the lab page (/lab)")
        try:
            info = json.loads(run_in_kernel(base, token, PROBE).strip().splitlines()[-1])
            ok &= say(info["js"] > 1000 and info["css"] > 100 and info["esm"],
                      f"its python3 kernel imports vdbnb {info['vdbnb']} and loads the panel's front end "
                      f"(panel.js {info['js']} B, panel.css {info['css']} B)")
        except Exception as e:  # noqa: BLE001 - report it as the failed check it is
            ok &= say(False, f"the kernel could not load the panel: {e}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)        # the lab and what it started (its kernels)
            proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"[check] {'all good' if ok else 'FAILED'}: JupyterLab stopped", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
