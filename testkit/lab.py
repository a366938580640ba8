"""JupyterLab 4 or Jupyter Notebook 7 + Debian's Chromium (driven by Playwright) for widget tests and benchmarks,
offline. ``Lab(root, app="notebook")`` serves the same notebooks with Notebook 7 (``/notebooks/<path>``); both
front ends expose ``window.jupyterapp`` and the same notebook commands, so a test drives them the same way.

Never `playwright install`: the browser is /usr/bin/chromium (apt). Used by tests/browser and bench/.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from testkit.server import free_port

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("VDBNB_ARTIFACTS", ROOT / "tests" / "browser" / "artifacts"))
CHROMIUM = os.environ.get("VDBNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage", "--disable-background-timer-throttling",
                 "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
                  for src in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


FRONT_ENDS = ("lab", "notebook")   # JupyterLab 4, Jupyter Notebook 7


class Lab:
    """`jupyter lab` (or `jupyter notebook`, Notebook 7, with ``app="notebook"``) as a subprocess on a free port,
    with a throwaway root dir and settings."""

    def __init__(self, root_dir: Path, env: dict | None = None, nodelay: bool = True, python: str | None = None,
                 repo_on_path: bool = True, app: str = "lab"):
        """``python``: the interpreter whose JupyterLab (and kernel) runs, default this one; ``repo_on_path``:
        put this repository first on the kernel's PYTHONPATH (off to test an installed vdbnb); ``app``: ``lab``
        (JupyterLab 4) or ``notebook`` (Notebook 7)."""
        if app not in FRONT_ENDS:
            raise ValueError(f"app must be one of {FRONT_ENDS}, not {app!r}")
        self.app = app
        self.nodelay = nodelay
        self.python = python or sys.executable
        self.repo_on_path = repo_on_path
        self.root = Path(root_dir)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        # a marker every process of this lab inherits (the server, its kernels, what they start): see leftovers()
        self.tag = secrets.token_hex(8)
        self.env = {**os.environ, **(env or {}), "VDBNB_TEST_LAB": self.tag}
        self.left: list[tuple[int, str]] = []
        self.proc: subprocess.Popen | None = None
        self.log = self.root / f"jupyter-{app}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, nb: str) -> str:
        if self.app == "notebook":
            return f"{self.base}/notebooks/{nb}?token={self.token}"
        return f"{self.base}/lab/tree/{nb}?token={self.token}&reset"

    def start(self, timeout: float = 90) -> "Lab":
        self.root.mkdir(parents=True, exist_ok=True)
        settings = self.root / ".lab-settings"
        notif = settings / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True, exist_ok=True)
        (notif / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
        ws = self.root / ".lab-workspaces"
        ws.mkdir(exist_ok=True)
        env = {**self.env, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(ws),
               "JUPYTER_RUNTIME_DIR": str(self.root / ".jupyter-runtime")}
        if self.repo_on_path:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        else:
            env.pop("PYTHONPATH", None)
        logf = open(self.log, "ab")
        expose = "--LabApp.expose_app_in_browser=True" if self.app == "lab" else \
            "--JupyterNotebookApp.expose_app_in_browser=True"
        self.proc = subprocess.Popen(
            [self.python, "-m", "jupyter", self.app, "--no-browser", "--allow-root", f"--port={self.port}",
             "--ip=127.0.0.1", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             expose, "--ServerApp.disable_check_xsrf=True", "--LabServerApp.workspaces_dir=" + str(ws)]
            + (["--ServerApp.jpserver_extensions={'vdbnb.widgets.server_ext': True}"] if self.nodelay else []),
            stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited: {self.log.read_text()[-3000:]}")
            try:
                r = httpx.get(f"{self.base}/api/status", params={"token": self.token}, timeout=1)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyter {self.app} did not come up in time")

    def stop(self) -> list[tuple[int, str]]:
        """Stop the lab (its process group; the kernels it started shut down with it). Returns, and keeps in
        ``self.left``, the processes of this lab still alive 20 s later (kernels, recorders, embedded servers:
        anything carrying this lab's marker), after stopping them by pid: a test asserts it is empty."""
        from testkit.procs import wait_no_processes_with_env
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the lab and the kernels it started
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.left = wait_no_processes_with_env("VDBNB_TEST_LAB", self.tag, timeout=20)
        for pid, _ in self.left:                  # ours (they carry this lab's marker)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.left


@contextmanager
def browser(width: int = 1400, height: int = 1100):
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} missing: apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = b.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
            yield ctx.new_page()
        finally:
            b.close()


# Headed on the rig's X display: getDisplayMedia needs a real screen to read. The browser's own picker is
# approved by --auto-select-desktop-capture-source (not --use-fake-ui-for-media-stream: on X11 it hands the
# capturer a source id it rejects); the microphone is allowed for the page and is PulseAudio's default source.
CAPTURE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows", "--password-store=basic"]


@contextmanager
def capture_browser(env: dict, screen: str = "Screen 1", width: int = 1400, height: int = 1000, console=None,
                    position: tuple[int, int] = (0, 0)):
    """Chromium headed on the rig's display (``env``: DISPLAY, PULSE_SERVER…) that may capture ``screen``
    and the microphone; yields (browser, page). ``console``: a list that collects the page's console;
    ``position``: the window's place on the X screen (x >= 1920: on the rig's display 2)."""
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} missing: apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=False, env={**os.environ, **env},
                              args=CAPTURE_ARGS + [f"--auto-select-desktop-capture-source={screen}",
                                                   f"--window-size={width},{height}",
                                                   f"--window-position={position[0]},{position[1]}"])
        try:
            ctx = b.new_context(viewport={"width": width, "height": height - 120}, permissions=["microphone"])
            page = ctx.new_page()
            if console is not None:
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            yield b, page
        finally:
            b.close()


def open_notebook(page, lab: Lab, nb: str, timeout: float = 60) -> None:
    page.goto(lab.url(nb), wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')",
                           timeout=timeout * 1000)
    # wait until the kernel is idle
    page.wait_for_function("""() => {
        const w = window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return k && k.status === 'idle';
    }""", timeout=timeout * 1000)


def run_all(page, wait: bool = True) -> None:
    """Run all cells. ``wait``: return once every cell has run (run-all's promise); else at once (a notebook
    that waits for a click in its output would never finish before the click)."""
    if wait:
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    else:
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


RUN_CELL_JS = """async ([code, timeoutMs, tags]) => {
    // Append a code cell (with cell tags, if given), run it, and time from the run request to its output.
    const app = window.jupyterapp;
    const nb = app.shell.currentWidget.content;
    await app.commands.execute('notebook:insert-cell-below');
    const cell = nb.activeCell;
    cell.model.sharedModel.setSource(code);
    if (tags && tags.length) cell.model.setMetadata('tags', tags);
    await new Promise(r => requestAnimationFrame(() => r()));
    let done;
    const shown = new Promise(r => { done = r; });
    const check = () => {
        const out = cell.node.querySelector('.jp-OutputArea-output');
        if (out && out.textContent.length) done(performance.now());
    };
    const mo = new MutationObserver(check);
    mo.observe(cell.node, {childList: true, subtree: true, characterData: true});
    const t0 = performance.now();
    app.commands.execute('notebook:run-cell');
    const t1 = await Promise.race([shown, new Promise(r => setTimeout(() => r(null), timeoutMs))]);
    mo.disconnect();
    const out = cell.node.querySelector('.jp-OutputArea-output');
    return {ms: t1 === null ? null : t1 - t0, text: out ? out.textContent : null};
}"""

KERNEL_RTT_JS = """async ([code]) => {
    // Kernel round trip as the page sees it: execute_request → execute_result on the websocket.
    const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const t0 = performance.now();
    let t1 = null;
    const fut = k.requestExecute({code, silent: false, store_history: false});
    fut.onIOPub = (msg) => { if (t1 === null && msg.header.msg_type === 'execute_result') t1 = performance.now(); };
    await fut.done;
    return t1 === null ? null : t1 - t0;
}"""


def kernel_rtt(page, code: str = "1+1") -> float | None:
    return page.evaluate(KERNEL_RTT_JS, [code])


def run_cell(page, code: str, timeout_ms: int = 30000, tags: list[str] | None = None) -> dict:
    """Run one new cell (tagged with ``tags``) in the open notebook; returns {ms: request → output shown, text}."""
    return page.evaluate(RUN_CELL_JS, [code, timeout_ms, tags or []])


def have_browser_stack(app: str = "lab") -> str | None:
    """None if JupyterLab (or Notebook 7 for ``app="notebook"``), Playwright and Chromium are all here; else what
    is missing."""
    try:
        import jupyterlab  # noqa: F401
        import playwright  # noqa: F401
        if app == "notebook":
            import notebook  # noqa: F401
    except ImportError as e:
        return f"missing Python package: {e.name} (pip install 'vdbnb[notebook,test]')"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} missing (apt-get install -y chromium)"
    if not (ROOT / "vdbnb" / "widgets" / "static" / "panel.js").exists():
        return "widget bundle not built: python js/build.py (or pip install -e .)"
    return None


def xterm(title: str, geometry: str = "100x30+200+150", env: dict | None = None) -> subprocess.Popen:
    if not shutil.which("xterm"):
        raise RuntimeError("xterm missing (the rig installs it)")
    return subprocess.Popen(["xterm", "-T", title, "-geometry", geometry, "-bg", "#f5f5dc", "-fg", "black",
                             "-e", "bash", "-c", "for i in $(seq 1 400); do echo line $i of a test window; done;"
                             " sleep 600"], env={**os.environ, **(env or {})})


def window_id(title: str, timeout: float = 10) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(["xdotool", "search", "--name", title], capture_output=True, text=True)
        if r.stdout.strip():
            return r.stdout.split()[0]
        time.sleep(0.1)
    raise RuntimeError(f"window {title!r} did not appear")
