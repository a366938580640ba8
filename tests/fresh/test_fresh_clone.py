"""The two README commands from a fresh clone, as a new user would run them (issue 19's "must show").

The repository is cloned into an empty temporary folder; there, as a user without root (one made for the test
with useradd when the suite runs as root, and removed afterwards), with only the system's folders on PATH (the
distribution's /usr/bin/python3 first: no pyenv or conda shims), a fresh HOME and, of the environment, only
the machine's network settings (CA bundle, proxy), it runs

    bash scripts/run.sh --check     # install into .venv, start JupyterLab, quickstart + panel bundle served, stop
    bash scripts/test.sh <fast subset, on its own rig display>

Both must pass with nothing beside the clone; afterwards no process of that user is left and the rig it
started is down. Slow (a first install downloads the Python packages into a new pip cache): runs in CI.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import rig as testrig

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the machine's network settings (a proxy, a local CA bundle) are the machine's, not the project's: kept
NETWORK_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
               "PIP_CERT", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
FAST_SUBSET = ["tests/rig", "tests/server/test_cli.py", "tests/notebooks/test_notebooks.py", "-k",
               "not runs_on_the_rig", "-q"]


def _apt_install(*pkgs: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], env=env, check=True,
                   capture_output=True, timeout=900)


def _system_python() -> str:
    """The distribution's interpreter with its venv module (what a fresh Debian/Ubuntu user has after
    `apt-get install python3 python3-venv`; installed here if missing and we are root)."""
    py = shutil.which("python3", path=SYSTEM_PATH)
    ok = py and subprocess.run([py, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0
    if not ok:
        if os.geteuid() != 0:
            pytest.skip("needs the distribution's python3 with venv: sudo apt-get install python3 python3-venv")
        _apt_install("python3", "python3-venv")
        py = shutil.which("python3", path=SYSTEM_PATH)
    assert py and "pyenv" not in py and "conda" not in py, py
    return py


class User:
    """Who runs the commands: a throwaway user made with useradd when we are root, else ourselves."""

    def __init__(self, work: Path):
        self.made = False
        if os.geteuid() == 0:
            self.name = f"vdbnbt{secrets.token_hex(3)}"
            self.home = work / "home"
            subprocess.run(["useradd", "--create-home", "--home-dir", str(self.home), "--shell", "/bin/bash",
                            "--user-group", self.name], check=True, capture_output=True)
            self.made = True
            self.uid = pwd.getpwnam(self.name).pw_uid
        else:
            self.name, self.uid = pwd.getpwuid(os.getuid()).pw_name, os.getuid()
            self.home = work / "home"
            self.home.mkdir()

    def run(self, cmd: list[str], cwd: Path, extra_env: dict, timeout: float) -> subprocess.CompletedProcess:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "PATH": SYSTEM_PATH,
               "LANG": "C.UTF-8", "CI": "true", **{k: os.environ[k] for k in NETWORK_ENV if k in os.environ},
               **extra_env}
        argv = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], *cmd]
        if self.made:
            argv = ["runuser", "-u", self.name, "--", *argv]
        p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            pytest.fail(f"{' '.join(cmd)} did not finish in {timeout:.0f}s:\n{out[-4000:]}")
        return subprocess.CompletedProcess(cmd, p.returncode, out, "")

    def processes(self) -> list[tuple[int, str]]:
        """Processes of the throwaway user (none of anyone else's)."""
        if not self.made:
            return []
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if d.stat().st_uid == self.uid:
                        out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]))
                except OSError:
                    pass
        return out

    def remove(self) -> None:
        if self.made:
            for pid, _ in self.processes():     # only the throwaway user's: ours by construction
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["userdel", "--remove", self.name], capture_output=True)


@pytest.mark.timeout(3600)
def test_run_check_and_test_from_a_fresh_clone_as_a_plain_user():
    py = _system_python()
    work = Path(tempfile.mkdtemp(prefix="vdbnb-fresh-"))
    os.chmod(work, 0o755)
    user = User(work)
    display = testrig.free_display(first=170)
    try:
        clone = work / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True)
        assert sorted(p.name for p in work.iterdir()) == ["clone", "home"]          # nothing beside the clone
        if user.made:
            subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(clone), str(user.home)], check=True)
        first = user.run(["bash", "-c", "command -v python3"], clone, {}, 60).stdout.strip()
        assert first == py, f"python3 on the user's PATH is {first}, not the system's {py}"

        t0 = time.time()
        r = user.run(["bash", "scripts/run.sh", "--check"], clone, {}, 2400)
        print(f"run.sh --check: {time.time() - t0:.0f}s, exit {r.returncode}\n{r.stdout[-2500:]}")
        assert r.returncode == 0, r.stdout[-6000:]
        assert "[check] all good" in r.stdout
        assert (clone / ".venv" / "bin" / "python").exists()

        t0 = time.time()
        r = user.run(["bash", "scripts/test.sh", *FAST_SUBSET], clone, {"RIG_DISPLAY": display}, 1800)
        print(f"test.sh (fast subset): {time.time() - t0:.0f}s, exit {r.returncode}\n{r.stdout[-2500:]}")
        assert r.returncode == 0, r.stdout[-6000:]
        assert " passed" in r.stdout and " failed" not in r.stdout

        # nothing left: no process of that user, no rig on its display, no rig folder
        deadline = time.time() + 20
        while time.time() < deadline and user.processes():
            time.sleep(0.5)
        assert user.processes() == [], f"left running: {user.processes()}"
        assert subprocess.run(["xdpyinfo", "-display", display], capture_output=True).returncode != 0
        assert not Path(f"/tmp/vdbnb-rig{display[1:]}").exists()
    finally:
        user.remove()
        shutil.rmtree(work, ignore_errors=True)
