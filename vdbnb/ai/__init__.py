"""Local AI engines behind small interfaces: VAD, speech-to-text, OCR, LLM, secret scanning.

Everything heavy is imported and loaded lazily on first use and cached. Weights come only from pip
packages; nothing is downloaded at run time.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["ort_session_options", "model_cache_dir", "missing"]


def missing(pkg: str, extra: str = "ai") -> RuntimeError:
    """An error that says which package is missing and how to install it."""
    return RuntimeError(f"{pkg} is not installed: pip install 'vdbnb[{extra}]' (or pip install {pkg})")


@functools.lru_cache(maxsize=None)
def ort_session_options(threads: int = 1, spinning: bool = True):
    """One shared onnxruntime SessionOptions per thread count (default 1 intra-op thread). ``spinning=False``:
    idle intra-op threads sleep instead of busy-waiting (engines that share the box with others)."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the install
        raise missing("onnxruntime") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def model_cache_dir() -> Path:
    """Where derived model files live: VDBNB_MODEL_DIR, else the platformdirs user cache."""
    env = os.environ.get("VDBNB_MODEL_DIR")
    if env:
        p = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        p = Path(user_cache_dir("vdbnb", appauthor=False)) / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p
