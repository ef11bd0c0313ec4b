"""Candidates for a large version: an inverted-file index with 8-bit codes (faiss IVF-SQ8).

The rows are filed under k-means centroids and a query scans its `NPROBE` nearest lists, a
filter applied during the scan (a bitmap selector); the caller rescores the proposed rows
exactly, so only which rows are found is approximate. Why these settings, with their recall:
docs/design.md, "The store: one interface, two backends" (`make index-recall`).
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

# Lists scanned per query (about 8% of the rows at 100k).
NPROBE = 96
CODE = faiss.ScalarQuantizer.QT_8bit
# k-means on a sample: training points per list (16 left the query's best entry in lists far
# from it: docs/design.md), iterations.
_SAMPLE_PER_LIST = 64
_KMEANS_ITERATIONS = 10


def _one_thread() -> None:
    # OpenMP's thread count is per calling thread: capped on every call, in the thread making
    # it. Idle OpenMP threads spin and take the cores ONNX Runtime and HTTP need.
    faiss.omp_set_num_threads(1)


class IvfIndex:
    """IVF-SQ8 over the rows of one matrix (inner product); ids are row positions."""

    def __init__(self, matrix: NDArray[np.float32], *, seed: int = 0) -> None:
        _one_thread()
        n, dim = matrix.shape
        self.nlist = max(1, min(n, round(4 * math.sqrt(n))))
        size = min(n, self.nlist * _SAMPLE_PER_LIST)
        rng = np.random.default_rng(seed)
        sample = matrix if size == n else matrix[np.sort(rng.choice(n, size, replace=False))]
        kmeans = faiss.Kmeans(
            dim, self.nlist, niter=_KMEANS_ITERATIONS, spherical=True, seed=seed,
            min_points_per_centroid=1, max_points_per_centroid=_SAMPLE_PER_LIST * 4,
        )  # fmt: skip
        kmeans.train(np.ascontiguousarray(sample))
        assert kmeans.centroids is not None
        self._quantizer = faiss.IndexFlatIP(dim)  # owned here: faiss keeps only a pointer
        self._quantizer.add(kmeans.centroids)
        self._index = faiss.IndexIVFScalarQuantizer(
            self._quantizer, dim, self.nlist, CODE, faiss.METRIC_INNER_PRODUCT
        )
        self._index.train(np.ascontiguousarray(sample))  # the code's per-dimension ranges
        self._index.add(np.ascontiguousarray(matrix))

    def search(
        self, query: NDArray[np.float32], k: int, selector: Selector | None = None
    ) -> NDArray[np.intp] | None:
        """Up to `k` rows (within `selector`) among the lists scanned, by their coded inner
        products; fewer when those lists hold fewer rows. None when every list would be
        scanned: an exact pass is then as cheap, and exact."""
        # A filter keeping a fraction f of the rows scans nprobe / f lists: as many of its rows.
        fraction = 1.0 if selector is None else max(selector.fraction, 1e-9)
        nprobe = math.ceil(NPROBE / fraction)
        if nprobe >= self.nlist:
            return None
        _one_thread()
        params: Any = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        if selector is not None:
            params.sel = selector.faiss
        _, labels = self._index.search(query.reshape(1, -1), k, params=params)
        return np.asarray(labels[0][labels[0] >= 0], dtype=np.intp)


class Selector:
    """A filter's rows as a faiss bitmap selector (kept with the bitmap it points into)."""

    def __init__(self, selection: NDArray[np.intp], rows: int) -> None:
        mask = np.zeros(rows, dtype=bool)
        mask[selection] = True
        self._bitmap = np.packbits(mask, bitorder="little")
        self.faiss = faiss.IDSelectorBitmap(rows, faiss.swig_ptr(self._bitmap))
        self.fraction = len(selection) / rows if rows else 0.0
