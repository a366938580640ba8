"""The tutorial notebooks (notebooks/NN-*.ipynb), executed top to bottom on the rig with nbclient — or, for a
notebook whose recorder is the browser (metadata ``vdbnb.runs_in == "browser"``: 08), in JupyterLab in Chromium
headed on the rig, where the test does the reader's part: it presses ● Start in the panel (the browser's
picker approves the rig's Screen 1, the page may use the microphone) and lets the notebook run on.

Each notebook runs in a fresh python3 kernel with its own data dir (``VDBNB_DATA_DIR`` = a temp dir), on the
rig's screens, microphone and system audio; any cell error (including the notebook's own assert cells)
fails the test. Afterwards no process the notebook started may be left (the embedded server exits with its
kernel; the recorder and windows too): every process carrying the notebook's VDBNB_DATA_DIR is looked for,
and the kernel's TMPDIR must be empty. The executed copy and the server log are saved in ``tests/notebooks/artifacts/``
(git-ignored), with the whole data dir when the notebook failed.

    RIG_DISPLAY=:95 pytest tests/notebooks          # every notebook, ~2-3 min each at most
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from testkit.procs import wait_no_processes_with_env
from vdbnb.server.lifecycle import start_time

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]-*.ipynb"))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CELL_TIMEOUT = 240


def _in_browser(path: Path) -> bool:
    return (nbformat.read(path, as_version=4).metadata.get("vdbnb") or {}).get("runs_in") == "browser"


IN_KERNEL = [p for p in NOTEBOOKS if not _in_browser(p)]
IN_BROWSER = [p for p in NOTEBOOKS if _in_browser(p)]


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ---------------------------------------------------------------- fast checks of the committed files
def test_the_notebooks_are_numbered_and_listed_in_order():
    names = [p.name for p in NOTEBOOKS]
    numbers = [int(n[:2]) for n in names]
    assert numbers[:5] == [1, 2, 3, 4, 5] and numbers == sorted(set(numbers)), names
    readme = (NB_DIR / "README.md").read_text()
    positions = [readme.find(n) for n in names]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), "notebooks/README.md lists them in order"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for c in _code_cells(nb):
        assert not c.outputs and c.execution_count is None, f"{path.name}: strip outputs before committing"
    first = _code_cells(nb)[0].source
    assert "tutorial_data_dir(" in first, "the first code cell gives the notebook its own data dir"
    assert any(re.search(r"^assert ", c.source, re.M) for c in _code_cells(nb)), "outputs are checked"


def test_tutorial_input_on_a_desktop_only_prints(monkeypatch, capsys):
    from rig import tutorial
    monkeypatch.setattr(tutorial, "_RIG", False)
    monkeypatch.setattr(tutorial, "_human_wait", lambda s: None)
    tutorial.say("hello there", to="system")
    w = tutorial.show_window("Some Title", "line one\nline two", display=2)
    tutorial.close_windows()
    out = capsys.readouterr().out
    assert "hello there" in out and "speakers" in out and "Some Title" in out and "display 2" in out
    assert w.proc is None and w.geometry is None
    with pytest.raises(ValueError):
        tutorial.say("x", to="nowhere")


def test_tutorial_data_dir_is_removed_with_its_server_when_the_kernel_exits(tmp_path):
    """Outside the tests (no VDBNB_DATA_DIR), a tutorial's data dir is a temp folder that goes, with the embedded
    server that used it, when the process (the kernel) exits."""
    import subprocess
    import sys
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import vdbnb; from rig.tutorial import "
            "tutorial_data_dir; d = tutorial_data_dir('nbtest'); c = vdbnb.connect(); "
            "print(json.dumps({'dir': d, 'pid': json.load(open(d + '/server.json'))['pid']}))")
    env = {k: v for k, v in os.environ.items() if k not in ("VDBNB_DATA_DIR", "VDBNB_URL", "VDBNB_API_KEY")}
    env["TMPDIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", code, str(ROOT)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    import json
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["dir"].startswith(str(tmp_path))
    assert not Path(info["dir"]).exists() and [p for p in tmp_path.iterdir() if p.is_dir()] == []
    assert start_time(info["pid"]) is None, "the tutorial's embedded server outlived it"   # gone (or a zombie)


# ---------------------------------------------------------------- the notebooks themselves, on the rig
def _kill(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            if start_time(pid) is None:
                return
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.rig
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", IN_KERNEL, ids=lambda p: p.stem)
def test_notebook_runs_on_the_rig(rig, path, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    data_dir = tmp_path / "data"
    kernel_tmp = tmp_path / "tmp"                             # the kernel's temp folders, checked empty after
    kernel_tmp.mkdir()
    monkeypatch.setenv("VDBNB_DATA_DIR", str(data_dir))       # the kernel inherits it (and so does all it starts)
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    for var in ("VDBNB_URL", "VDBNB_API_KEY"):                  # always the notebook's own embedded server
        monkeypatch.delenv(var, raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.time()
    ok = False
    try:
        client.execute()
        ok = True
    except CellExecutionError as e:
        pytest.fail(f"{path.name} failed after {time.time() - t0:.0f}s:\n{str(e)[-4000:]}", pytrace=False)
    finally:
        # nbclient has shut the kernel down: the server, recorder and windows it started must go by themselves
        left = wait_no_processes_with_env("VDBNB_DATA_DIR", str(data_dir), timeout=30)
        for pid, _ in left:                                    # ours (they carry this test's data dir): stop them
            _kill(pid)
        out = ARTIFACTS / path.stem                               # the executed copy, for inspection
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        nbformat.write(nb, out / path.name)
        if (data_dir / "server.log").exists():
            shutil.copy(data_dir / "server.log", out / "server.log")
        if not ok and data_dir.exists():
            shutil.copytree(data_dir, out / "data", ignore=shutil.ignore_patterns("*.sock"))
    elapsed = time.time() - t0
    print(f"{path.name}: {elapsed:.0f}s")  # (how long a tutorial takes is a figure, not a test: the box is shared)
    assert not left, f"{path.name} left processes running after its kernel exited: {left}"
    # (onnxruntime keeps a one-line `.ses` id file in TMPDIR by design: a file, not a folder)
    left_tmp = sorted(p for p in kernel_tmp.iterdir() if p.is_dir())
    assert not left_tmp, f"{path.name} left temp folders: {left_tmp}"


# JupyterLab: done when every code cell ran and the kernel is idle, or at the first error output (run-all stops there)
LAB_PROGRESS_JS = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    const cells = w.content.widgets.filter(c => c.model.type === 'code');
    for (const c of cells) {
        for (let i = 0; i < c.model.outputs.length; i++) {
            const o = c.model.outputs.get(i).toJSON();
            if (o.output_type === 'error') return {error: o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n')};
        }
    }
    const ran = cells.filter(c => c.model.executionCount !== null).length;
    return {ran, cells: cells.length, idle: !!k && k.status === 'idle'};
}"""


# the panel's cell becomes the active one and is scrolled to (run-all left the last cell active, at the bottom)
SHOW_PANEL_JS = """async () => {
    const nb = window.jupyterapp.shell.currentWidget.content;
    const i = nb.widgets.findIndex(c => c.node.querySelector('.vdbnb-panel'));
    if (i < 0) return false;
    nb.activeCellIndex = i;
    await nb.scrollToItem(i, 'center');
    nb.widgets[i].node.querySelector('.vdbnb-panel').scrollIntoView({block: 'center'});
    return true;
}"""


def press_start(page, tries: int = 3) -> None:
    """The reader's click on ● Start: the browser asks, the rig approves. Run-all has scrolled the notebook to
    its last cell, so the panel is brought into view first; a click that did not start the page's recorder
    (the notebook scrolled under the pointer) is made again."""
    start = page.locator(".vdbnb-panel .vdbnb-start")
    page.wait_for_selector(".vdbnb-panel .vdbnb-start:not([disabled])", state="attached", timeout=240_000)
    for _ in range(tries):
        page.evaluate(SHOW_PANEL_JS)
        page.wait_for_timeout(500)                          # let the notebook settle where it scrolled to
        start.click(timeout=20_000)
        try:
            page.wait_for_function("() => (document.querySelector('.vdbnb-panel') || {dataset: {}})"
                                   ".dataset.recorder === 'recording'", timeout=30_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: click again
            continue
    raise AssertionError(f"● Start did not start the page's recorder after {tries} clicks")


@pytest.mark.slow
@pytest.mark.rig
@pytest.mark.browser
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", IN_BROWSER, ids=lambda p: p.stem)
def test_browser_notebook_runs_in_jupyterlab(rig, path, tmp_path, monkeypatch):
    """Run all in JupyterLab (Chromium headed on the rig); press ● Start once the panel shows, as its text says.
    Any error output fails (with its traceback); the executed copy is saved in the artifacts."""
    from testkit.lab import Lab, capture_browser, have_browser_stack, open_notebook, run_all
    missing = have_browser_stack()
    if missing:
        pytest.skip(missing)
    for var in ("VDBNB_URL", "VDBNB_API_KEY"):                  # always the notebook's own embedded server
        monkeypatch.delenv(var, raising=False)
    data_dir = tmp_path / "data"
    nb_dir = tmp_path / "lab" / "notebooks"                   # `..` of the notebook is not the repo: PYTHONPATH is
    nb_dir.mkdir(parents=True)
    shutil.copy(path, nb_dir / path.name)
    lab = Lab(tmp_path / "lab", env={**rig, "VDBNB_DATA_DIR": str(data_dir)}).start()
    console: list[str] = []
    progress: dict = {}
    t0 = None
    try:
        with capture_browser(rig, console=console) as (_b, page):
            open_notebook(page, lab, f"notebooks/{path.name}", timeout=180)
            t0 = time.time()
            run_all(page, wait=False)                          # it waits for the click below
            press_start(page)
            deadline = time.time() + 600
            while time.time() < deadline:
                progress = page.evaluate(LAB_PROGRESS_JS)
                if progress.get("error") or (progress["ran"] == progress["cells"] and progress["idle"]):
                    break
                time.sleep(1)
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            time.sleep(2)
    finally:
        left = lab.stop()
        out = ARTIFACTS / path.stem
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        shutil.copy(nb_dir / path.name, out / path.name)      # the executed copy, as Lab saved it
        (out / "console.txt").write_text("\n".join(console))
        if (data_dir / "server.log").exists():
            shutil.copy(data_dir / "server.log", out / "server.log")
    assert not progress.get("error"), f"{path.name} failed:\n{progress['error'][-4000:]}"
    assert progress.get("ran") == progress.get("cells"), f"{path.name} did not finish: {progress}"
    print(f"{path.name}: {time.time() - t0:.0f}s after the notebook opened")
    assert not left, f"{path.name} left processes running after JupyterLab stopped: {left}"
