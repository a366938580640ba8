"""Use the official ``videodb`` SDK's capture client with vdbnb's recorder.

``videodb.capture.CaptureClient`` finds its native recorder through an importable module named
``videodb_capture_bin`` with ``get_binary_path()`` (its documented hook). VideoDB publishes that binary for
macOS and Windows only; ``use_vdbnb_recorder()`` registers, in this process only, a module of that name whose
binary is vdbnb's recorder, which speaks the same line protocol. Nothing is installed or shadowed on disk::

    import vdbnb.compat, videodb.capture
    vdbnb.compat.use_vdbnb_recorder()
    client = videodb.capture.CaptureClient(client_token, base_url="http://127.0.0.1:8765")
"""
from __future__ import annotations

import shutil
import stat
import sys
import types
from pathlib import Path


def recorder_executable() -> str:
    """A path to an executable that runs vdbnb's recorder (the console script, or a launcher we write)."""
    exe = shutil.which("vdbnb-recorder")
    if exe:
        return exe
    from platformdirs import user_cache_dir
    path = Path(user_cache_dir("vdbnb", appauthor=False)) / "bin" / "vdbnb-recorder"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"#!{sys.executable}\nfrom vdbnb.recorder.cli import main\nraise SystemExit(main())\n"
    if not path.exists() or path.read_text() != body:
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def use_vdbnb_recorder(force: bool = False) -> str:
    """Make ``videodb.capture.CaptureClient`` spawn vdbnb's recorder. Returns the executable's path.

    If the real ``videodb_capture_bin`` is importable it is left alone unless ``force=True``."""
    if not force:
        try:
            import videodb_capture_bin  # noqa: F401
            real = getattr(sys.modules["videodb_capture_bin"], "__vdbnb__", False) is False
            if real:
                return sys.modules["videodb_capture_bin"].get_binary_path()
        except ImportError:
            pass
    exe = recorder_executable()
    mod = types.ModuleType("videodb_capture_bin")
    mod.__vdbnb__ = True
    mod.get_binary_path = lambda: exe
    mod.__doc__ = "vdbnb's recorder registered as the official SDK's capture binary (this process only)."
    sys.modules["videodb_capture_bin"] = mod
    return exe
