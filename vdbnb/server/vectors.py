"""The vector side of the search index: an HNSW graph (usearch, float16) for approximate nearest neighbours
over everything, and a flat float16 matrix on disk (memory-mapped, row = segment id) for exact cosine over
small filtered candidate sets. Both are caches of the vectors kept in SQLite (search.py rebuilds them from
there when their files are missing or unreadable).

Chosen by measurement (docs/search.md): at 1 M segments usearch HNSW answers in ~1 ms at recall@5 ≈ 0.99;
exact numpy over 1 M float32 vectors takes ~150 ms.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DIM = 384
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128


def _usearch():
    try:  # onnxruntime (1.32) segfaults when imported after usearch's extension: load it first
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    try:
        from usearch.index import Index
    except ImportError as e:
        raise ImportError("usearch is missing (the search index's vector graph); "
                          "install it: pip install 'vdbnb[ai]'") from e
    return Index


class VectorIndex:
    """Maps int64 ids (segment row ids, >= 1) to unit vectors; approximate and exact inner-product search."""

    def __init__(self, base: Path, dim: int = DIM, threads: int = 2):
        self.base = Path(base)
        self.graph_path = self.base.with_name(self.base.name + ".usearch")
        self.flat_path = self.base.with_name(self.base.name + ".f16")
        self.path = self.graph_path
        self.dim = dim
        self.threads = threads
        self._lock = threading.RLock()
        self.loaded = self._load()

    # --------------------------------------------------------------------------------- lifecycle
    def _new_graph(self):
        return _usearch()(ndim=self.dim, metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                          expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)

    def _load(self) -> bool:
        """Open the saved graph and flat file; on any problem start empty (the caller replays SQLite)."""
        self._graph = self._new_graph()
        self._flat = np.zeros((0, self.dim), dtype=np.float16)
        if not (self.graph_path.exists() and self.flat_path.exists()):
            return False
        try:
            self._graph.load(str(self.graph_path))
            if self._graph.ndim != self.dim:
                raise ValueError(f"graph has {self._graph.ndim} dims, expected {self.dim}")
            size = self.flat_path.stat().st_size
            if size % (2 * self.dim):
                raise ValueError("flat vector file has a partial row")
            self._flat = np.memmap(self.flat_path, dtype=np.float16, mode="r+",
                                   shape=(size // (2 * self.dim), self.dim)) if size else self._flat
            return True
        except Exception as e:  # noqa: BLE001 - any unreadable cache is rebuilt
            log.warning("search: vector index %s unreadable (%s); rebuilding it from SQLite", self.graph_path, e)
            self._graph = self._new_graph()
            self._flat = np.zeros((0, self.dim), dtype=np.float16)
            for p in (self.graph_path, self.flat_path):
                p.unlink(missing_ok=True)
            return False

    def save(self) -> None:
        with self._lock:
            tmp = self.graph_path.with_name(self.graph_path.name + ".tmp")
            self._graph.save(str(tmp))
            os.replace(tmp, self.graph_path)
            if isinstance(self._flat, np.memmap):
                self._flat.flush()
            else:
                self._grow(len(self._flat))  # write it out and memory-map it

    def _grow(self, rows: int) -> None:
        """Make the flat file hold at least ``rows`` rows (amortised doubling) and re-map it."""
        cur = self._flat
        if isinstance(cur, np.memmap) and len(cur) >= rows:
            return
        new_rows = max(rows, int(len(cur) * 1.5) + 1024)
        if isinstance(cur, np.memmap):
            cur.flush()
            with open(self.flat_path, "r+b") as f:
                f.truncate(new_rows * 2 * self.dim)
        else:
            with open(self.flat_path, "wb") as f:
                f.truncate(new_rows * 2 * self.dim)
        mm = np.memmap(self.flat_path, dtype=np.float16, mode="r+", shape=(new_rows, self.dim))
        if not isinstance(cur, np.memmap) and len(cur):
            mm[: len(cur)] = cur
        self._flat = mm

    # ----------------------------------------------------------------------------------- changes
    def __len__(self) -> int:
        return len(self._graph)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vecs = np.ascontiguousarray(vecs, dtype=np.float16)
        with self._lock:
            present = ids[self._graph.contains(ids.astype(np.uint64))]
            if len(present):
                self._graph.remove(present.astype(np.uint64))
            self._grow(int(ids.max()) + 1)
            self._flat[ids] = vecs
            self._graph.add(ids.astype(np.uint64), vecs, threads=self.threads if len(ids) > 1000 else 1)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids):
            with self._lock:
                self._graph.remove(ids.astype(np.uint64))

    # ------------------------------------------------------------------------------------ search
    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k by inner product: (ids, similarities), best first."""
        with self._lock:
            if not len(self._graph):
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            m = self._graph.search(np.asarray(q, dtype=np.float32), k, exact=len(self._graph) <= 2 * k)
        return m.keys.astype(np.int64), (1.0 - m.distances).astype(np.float32)

    def exact(self, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product among ``ids``: (ids, similarities), best first. Runs on the float16
        rows with usearch's SIMD kernels (a float32 copy would cost more than the search)."""
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            ids = ids[ids < len(self._flat)]
            rows = self._flat[ids]
        if not len(ids):
            return ids, np.zeros(0, np.float32)
        from usearch.index import search as exact_search
        m = exact_search(rows, np.asarray(q, dtype=np.float16), min(k, len(ids)), "ip", exact=True,
                         threads=self.threads)
        keys = m.keys.astype(np.int64)
        return ids[keys], (1.0 - m.distances).astype(np.float32)
