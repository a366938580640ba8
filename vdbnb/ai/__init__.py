"""Local AI engines behind small interfaces: VAD, speech-to-text, OCR, LLM, secret scanning.

Everything heavy is imported and loaded lazily on first use and cached. Weights come only from pip
packages; nothing is downloaded at run time.

The engines are process-wide (each is loaded once), so their settings are too: the server hands its
:class:`~vdbnb.config.Settings` to :func:`configure` before the pipelines start; used without a server (tests,
benches) the engines take ``Settings.from_env()``, read once on first use.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

from ..config import Settings

__all__ = ["configure", "settings", "ort_session_options", "model_cache_dir", "missing"]

_SETTINGS: Settings | None = None
_SETTINGS_LOCK = threading.Lock()


def configure(settings: Settings) -> None:
    """The settings the engines use in this process (threads, model dir, int8 OCR, the LLM)."""
    global _SETTINGS
    with _SETTINGS_LOCK:
        _SETTINGS = settings


def settings() -> Settings:
    """The configured settings, else ``Settings.from_env()`` (read once)."""
    global _SETTINGS
    with _SETTINGS_LOCK:
        if _SETTINGS is None:
            _SETTINGS = Settings.from_env()
        return _SETTINGS


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
    """Where derived model files live: ``Settings.model_dir`` (VDBNB_MODEL_DIR), else the user cache dir."""
    p: Path = settings().model_cache
    p.mkdir(parents=True, exist_ok=True)
    return p
