"""The kernel channel and the magics in a real JupyterLab 4 and a real Jupyter Notebook 7, in Chromium: tick the
kernel in the CapturePanel, record, run cells (one tagged ``vdbnb-private`` in the front end, one
``%%vdbnb_private``, one that fails), stop; the panel lists them as they arrive and the session holds them.

RIG_DISPLAY=:96 pytest tests/browser/test_kernel_channel_browser.py
"""
from __future__ import annotations

import json
import uuid

import pytest

from testkit.lab import (ARTIFACTS, FRONT_ENDS, Lab, browser, have_browser_stack, open_notebook, run_all,
                         run_cell, write_notebook)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.rig]

CARD = '.vdbnb-card[data-channel-id="kernel:current"]'


@pytest.mark.parametrize("app", FRONT_ENDS, ids=["jupyterlab4", "notebook7"])
def test_kernel_channel_and_magics_in_the_browser(app, rig, server, tmp_path):
    missing = have_browser_stack(app)
    if missing:
        pytest.skip(missing)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "nb"
    root.mkdir()
    write_notebook(root / "kernel.ipynb", ["%load_ext vdbnb\n%vdbnb status",
                                           "from vdbnb.widgets import CapturePanel\npanel = CapturePanel()\npanel"])
    secret = "plum-" + uuid.uuid4().hex[:8]
    lab = Lab(root, env={**rig, "VDBNB_URL": server.url, "VDBNB_API_KEY": server.api_key}, app=app).start()
    try:
        with browser() as page:
            open_notebook(page, lab, "kernel.ipynb")
            run_all(page)
            page.wait_for_selector(".vdbnb-panel", timeout=60_000)
            status = page.locator(".jp-OutputArea-output").first.inner_text()
            assert "capture session" in status and "health" in status, status      # %vdbnb status (HTML)
            box = page.locator(f"{CARD} input[type=checkbox]")
            box.wait_for(timeout=30_000)
            assert not box.is_checked()                                 # off by default
            box.check()
            page.wait_for_function(f"document.querySelector('{CARD}').classList.contains('vdbnb-off') === false")
            page.click(".vdbnb-start")
            page.wait_for_function("document.querySelector('.vdbnb-panel').dataset.state === 'recording'",
                                   timeout=30_000)

            assert "public cell" in run_cell(page, "print('a public cell')")["text"]
            assert "by tag" in run_cell(page, f"print('{secret} by tag')", tags=["vdbnb-private"])["text"]
            assert "by magic" in run_cell(page, f"%%vdbnb_private\nprint('{secret} by magic')")["text"]
            r = run_cell(page, "orders = {'id': 1}\norders['customer_id']")
            assert "KeyError" in r["text"], r
            page.wait_for_function(f"+(document.querySelector('{CARD}').dataset.cells || 0) >= 4", timeout=30_000)
            rows = page.eval_on_selector_all(f"{CARD} .vdbnb-cell", "els => els.map(e => e.className + '|' + "
                                                                   "e.textContent)")
            assert [r.split("|")[0].split()[-1] for r in rows[-4:]] == [
                "vdbnb-cell-ok", "vdbnb-cell-private", "vdbnb-cell-private", "vdbnb-cell-error"], rows
            assert "KeyError" in rows[-1] and secret not in json.dumps(rows)
            page.locator(".vdbnb-panel").screenshot(path=str(ARTIFACTS / f"panel-kernel-{app}.png"))
            page.click(".vdbnb-stop")
            page.wait_for_function("document.querySelector('.vdbnb-panel').dataset.state === 'stopped'",
                                   timeout=60_000)
            r = run_cell(page, "import json\ns = panel.session\nprint(json.dumps([(e.label, e.text, e.data) for e in "
                               "s.events() if e.channel == 'kernel']))")
            cells = json.loads(r["text"])
            assert [c[0] for c in cells] == ["ok", "private", "private", "error"], cells
            assert cells[0][1] == "print('a public cell')" and cells[3][2]["ename"] == "KeyError"
            assert all(c[1] == "a private cell ran" for c in cells[1:3]) and secret not in r["text"]
            assert [c[2].get("cell_id") is not None for c in (cells[0], cells[3])] == [True, True]  # sent by the UI
            assert str(cells[0][2].get("notebook_path")).endswith("kernel.ipynb"), cells[0]   # the kernel's __session__
    finally:
        lab.stop()
    assert not lab.left, f"processes of the lab left running after it stopped: {lab.left}"
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
