"""The README's Python code blocks, run as written, in order, in one real notebook kernel on the rig, so they
cannot rot. Where a block says ``...`` (you do something here), the test does the rig's version of it; where
the README says "say something", the rig's microphone says it. Afterwards the kernel is shut down and no
process it started may be left."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from testkit.procs import wait_no_processes_with_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SPOKEN = "The budget review moves to Thursday afternoon."

# the rig's microphone speaks once the minute-of-code's session is active (a thread in the kernel)
SPEAKER = """
import subprocess, threading, time
def _speak_when_active(wav={wav!r}):
    deadline = time.time() + 120
    while time.time() < deadline:
        c = globals().get("cap")
        try:
            if c is not None and c.refresh().status == "active":
                break
        except Exception:
            pass
        time.sleep(0.2)
    time.sleep(1.0)
    subprocess.run(["paplay", "--device=mic_feed", wav], check=False)
threading.Thread(target=_speak_when_active, daemon=True).start()
"""
# what "..." stands for in the kernel-channel block: a cell that fails
USER_CELLS = {1: '{"order": 17}["customer_id"]'}
CHECKS = {0: f"""
import re, time
deadline = time.time() + 90
said = set(re.findall(r"[a-z]+", {SPOKEN!r}.lower()))
while True:
    text = " ".join(r["text"] for r in mic.get_transcript()["transcription_records"])
    if len(said & set(re.findall(r"[a-z]+", text.lower()))) >= 0.6 * len(said) or time.time() > deadline:
        break
    time.sleep(0.5)
print("transcript:", text)
assert len(said & set(re.findall(r"[a-z]+", text.lower()))) >= 0.6 * len(said), text
""", 1: """
hits = cap.get_rtstream("kernel")[0].search("KeyError customer_id")
assert len(hits.get_shots()) >= 1
""", 2: """
assert cap.id and conn.get_collection().get_capture_session(cap.id).id == cap.id
"""}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_the_blocks_this_test_knows():
    blocks = python_blocks()
    assert len(blocks) == 3, "a README python block was added or removed: teach tests/docs/test_readme.py"
    assert "vdbnb.connect()" in blocks[0] and "channels.kernels.default" in blocks[1]
    assert "videodb.connect(" in blocks[2]
    assert "data_dir" not in blocks[2] and "8765" not in blocks[2]     # no undefined names, no fixed port
    assert ".sync()" not in "".join(blocks)                             # CaptureClient.sync(token) is a classmethod
    assert 'pip install "vdbnb[ai,notebook]"' in README.read_text() and "%load_ext vdbnb" in README.read_text()


@pytest.mark.slow
@pytest.mark.rig
@pytest.mark.timeout(600)
def test_readme_python_blocks_run_on_the_rig(rig, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    data_dir, ktmp = tmp_path / "data", tmp_path / "tmp"
    ktmp.mkdir()
    for var in ("VDBNB_URL", "VDBNB_API_KEY", "VIDEO_DB_API"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VDBNB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TMPDIR", str(ktmp))
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), SPOKEN], check=True, capture_output=True)

    cells = [nbformat.v4.new_code_cell(SPEAKER.format(wav=str(wav)))]
    for i, block in enumerate(python_blocks()):
        parts = re.split(r"^\.\.\..*$", block, flags=re.M)
        for j, part in enumerate(parts):
            cells.append(nbformat.v4.new_code_cell(part.strip("\n")))
            if j < len(parts) - 1:
                cell = nbformat.v4.new_code_cell(USER_CELLS[i])
                cell.metadata["tags"] = ["raises-exception"]
                cells.append(cell)
        cells.append(nbformat.v4.new_code_cell(CHECKS[i]))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "py",
                                                                          "language": "python"}})
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"a README block failed:\n{str(e)[-4000:]}", pytrace=False)
    finally:
        left = wait_no_processes_with_env("VDBNB_DATA_DIR", str(data_dir), timeout=30)
        from vdbnb.api.embedded import stop_server
        stop_server(data_dir)
    assert not left, f"the README's code left processes running after its kernel exited: {left}"
    # temp folders (onnxruntime keeps a one-line `.ses` id file in TMPDIR by design: a file, not a folder)
    left_tmp = sorted(p for p in ktmp.iterdir() if p.is_dir())
    assert not left_tmp, f"temp folders left: {left_tmp}"
