"""Packaging facts that a fresh machine depends on (fast; no network)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_setup_installs_the_build_requirements_of_pyproject():
    tomllib = __import__("tomllib") if sys.version_info >= (3, 11) else __import__("tomli")
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    got = re.search(r'^BUILD_REQS="([^"]*)"', (ROOT / "scripts" / "setup.sh").read_text(), re.M).group(1).split()
    assert sorted(got) == sorted(want)


def test_the_bundle_is_never_committed():
    tracked = subprocess.run(["git", "ls-files", "vdbnb/widgets/static", "js/node_modules"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    assert tracked == ["vdbnb/widgets/static/.gitignore"]


def test_scripts_install_only_into_the_venv_and_never_hide_pip_failing():
    for name in ("setup.sh", "run.sh", "test.sh"):
        text = (ROOT / "scripts" / name).read_text()
        assert not re.search(r"python3? -m pip install", text), f"{name} pip-installs outside the venv"
        assert not re.search(r"pip[^\n]*\|\| *true", text), f"{name} hides a failing pip"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '"$PY" -m venv "$VENV"' in setup and 'VPY="$VENV/bin/python"' in setup


def test_shell_scripts_parse():
    for f in [*sorted((ROOT / "scripts").glob("*.sh")), *sorted((ROOT / "rig").glob("*.sh"))]:
        r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, f"{f.name}: {r.stderr}"
