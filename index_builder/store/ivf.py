"""Candidates for a large version: an inverted-file index with exact vectors (faiss IVF-Flat).

Above `matrix.LARGE_ROWS` a batch's exact scan costs more than the model (100k x 384 fused
rows: about 3 ms of one core per query, where the int8 model takes about 2). The rows are filed
under `nlist` k-means centroids, and a query scans the rows of its `nprobe` nearest centroids
only. The vectors in the lists are the rows themselves, not codes, so every score it returns is
the exact inner product: only which rows it finds is approximate, and `NPROBE` is set so that
the exact best hit is found for at least 99% of the shopper dev queries (`make index-recall`,
docs/design.md). A filter is applied while the lists are scanned (faiss's bitmap selector), and
when the lists scanned hold fewer rows of the filter than wanted, the caller scans the filter's
rows exactly.

faiss-cpu is pinned: a maintained C++ library (one abi3 wheel), whose IVF search takes a
per-query selector.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

# Lists scanned per query (at 100k rows ~1,265 lists of ~80 rows: ~5% of the rows).
NPROBE = 64
# k-means on a sample: training points per list, iterations (about a second at 100k x 384).
_SAMPLE_PER_LIST = 16
_KMEANS_ITERATIONS = 10


def _one_thread() -> None:
    # OpenMP's thread count is per calling thread: capped on every call, in the thread making
    # it. Idle OpenMP threads spin and take the cores ONNX Runtime and HTTP need.
    faiss.omp_set_num_threads(1)


class IvfIndex:
    """IVF-Flat over the rows of one matrix (inner product); ids are row positions."""

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
        self._index = faiss.IndexIVFFlat(
            self._quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT
        )
        self._index.is_trained = True
        self._index.add(np.ascontiguousarray(matrix))

    def search(
        self, query: NDArray[np.float32], k: int, selector: Selector | None = None
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Up to `k` rows (within `selector`) among the lists scanned, best first, with their
        exact inner products; fewer when those lists hold fewer rows."""
        _one_thread()
        params: Any = faiss.SearchParametersIVF()
        # A filter keeping a fraction f of the rows scans nprobe / f lists: as many of its rows.
        fraction = 1.0 if selector is None else max(selector.fraction, 1e-9)
        params.nprobe = max(1, min(self.nlist, math.ceil(NPROBE / fraction)))
        if selector is not None:
            params.sel = selector.faiss
        scores, labels = self._index.search(query.reshape(1, -1), k, params=params)
        found = labels[0] >= 0
        return labels[0][found].astype(np.intp), scores[0][found].astype(np.float32)


class Selector:
    """A filter's rows as a faiss bitmap selector (kept with the bitmap it points into)."""

    def __init__(self, selection: NDArray[np.intp], rows: int) -> None:
        mask = np.zeros(rows, dtype=bool)
        mask[selection] = True
        self._bitmap = np.packbits(mask, bitorder="little")
        self.faiss = faiss.IDSelectorBitmap(rows, faiss.swig_ptr(self._bitmap))
        self.fraction = len(selection) / rows if rows else 0.0
