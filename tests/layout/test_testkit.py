"""Helpers shared by tests and benches live in `testkit/` (a package beside `rig/`), not inside `tests/`: no bench
imports a test module, and `testkit` imports nothing from `tests`."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant):
            out.add(str(node.args[0].value))
    return out


def test_benches_and_the_kit_import_no_test_module():
    bad = {}
    for folder in ("bench", "testkit"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            mods = sorted(m for m in imported(p) if m == "tests" or m.startswith("tests."))
            if mods:
                bad[str(p.relative_to(ROOT))] = mods
    assert not bad, f"import shared helpers from testkit, not from the test suite: {bad}"


def test_the_kit_is_not_in_the_runtime_package():
    assert not (ROOT / "vdbnb" / "testkit").exists()
    assert not any("testkit" in imported(p) for p in (ROOT / "vdbnb").rglob("*.py"))
