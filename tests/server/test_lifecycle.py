"""The embedded server's lifecycle: one per data dir, reused; it exits when the processes that used it have
exited, or after idle minutes with no client; `vdbnb stop` stops it. Real processes, real sockets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

OWNER = """
import sys, vdbnb
conn = vdbnb.connect()
print(conn.base_url, flush=True)
for line in sys.stdin:            # "list": use the server (reconnects if it went away); EOF: exit
    print(len(conn.list_capture_sessions()), conn.base_url, flush=True)
"""


def server_pid(d: Path) -> int:
    return int(json.loads((d / "server.json").read_text())["pid"])


def alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


class Owner:
    """A process that uses the embedded server of ``data_dir`` through vdbnb.connect() (as a kernel does)."""

    def __init__(self, data_dir: Path, **env: str):
        e = {k: v for k, v in os.environ.items() if k not in ("VDBNB_URL", "VDBNB_API_KEY")}
        self.p = subprocess.Popen([sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env={**e, "VDBNB_DATA_DIR": str(data_dir), **env})
        self.url = self.p.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def use(self) -> str:
        self.p.stdin.write("list\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().split()[1]

    def exit(self) -> None:
        self.p.stdin.close()
        self.p.wait(30)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    yield d
    from vdbnb.api.embedded import stop_server
    stop_server(d)


def test_one_server_per_data_dir_that_exits_with_the_last_process_using_it(data_dir):
    a = Owner(data_dir)
    pid = server_pid(data_dir)
    b = Owner(data_dir)                       # a second kernel on the same data dir reuses it
    assert b.url == a.url and server_pid(data_dir) == pid
    a.exit()
    time.sleep(2.5)                           # two lifecycle checks: b still uses it
    assert alive(pid), "the server exited while another process still used it"
    assert b.use() == a.url
    b.exit()
    assert wait_gone(pid, 15), "the embedded server outlived every process that used it"
    assert not (data_dir / "server.json").exists()


def test_a_killed_kernel_takes_its_server_along(data_dir):
    a = Owner(data_dir)
    pid = server_pid(data_dir)
    a.p.kill()                                # no clean exit: SIGKILL, as a crashed kernel
    a.p.wait(10)
    assert wait_gone(pid, 15)


def test_idle_server_exits_and_comes_back_on_next_use(data_dir):
    a = Owner(data_dir, VDBNB_IDLE_EXIT_S="2")
    pid = server_pid(data_dir)
    assert wait_gone(pid, 20), "an idle embedded server did not exit"
    url = a.use()                             # the connection starts it again (maybe on another port)
    assert url.startswith("http://127.0.0.1:")
    new = server_pid(data_dir)
    assert new != pid and alive(new)
    assert httpx.get(url + "/health", timeout=5).status_code == 200
    a.exit()
    assert wait_gone(new, 15)


def test_not_idle_while_a_client_listens(data_dir):
    a = Owner(data_dir, VDBNB_IDLE_EXIT_S="2")
    pid = server_pid(data_dir)
    key = (data_dir / "api_key").read_text().strip()
    ws_url = httpx.get(a.url + "/collection/default/websocket", headers={"x-access-token": key},
                       timeout=5).json()["data"]["websocket_url"]
    from websockets.sync.client import connect
    with connect(ws_url, open_timeout=10):
        time.sleep(4)                         # twice the idle limit with an open websocket
        assert alive(pid)
    assert wait_gone(pid, 20)
    a.exit()


def test_vdbnb_stop(data_dir):
    a = Owner(data_dir)
    pid = server_pid(data_dir)
    r = subprocess.run([sys.executable, "-m", "vdbnb", "--data-dir", str(data_dir), "stop"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and f"pid {pid}" in r.stdout, r.stdout + r.stderr
    assert not alive(pid)
    r = subprocess.run([sys.executable, "-m", "vdbnb", "--data-dir", str(data_dir), "stop"], capture_output=True,
                       text=True, timeout=60)
    assert "no vdbnb server is running" in r.stdout
    a.exit()
