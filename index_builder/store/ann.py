"""Approximate candidates for a large snapshot: an inverted-file index (faiss IVF, 8-bit codes).

Above `MatrixSnapshot`'s row threshold (`matrix.ANN_THRESHOLD`), a dense part's prefetch no
longer scans every row: the way Qdrant switches from a full scan to its HNSW graph above
`full_scan_threshold`, each normalised matrix gets an IVF index, `nlist` k-means centroids with
every row filed under its nearest one, and a query scans only the rows of its `nprobe` best
centroids. The index only proposes rows: their scores are the exact float32 dot products
computed again by the snapshot (rescoring), so a score is never approximate, only which rows
make a prefetch is (recall).

The lists hold 8-bit scalar-quantised rows (IVF-SQ8; measured at 100k x 384: the same
recall@24 after rescoring as IVF-Flat, at half its scan time), so the index proposes more rows than
wanted by their 8-bit scores (`proposed`) and the snapshot keeps the best by exact scores.

Why faiss IVF (faiss-cpu, pinned): a maintained C++ library with wheels for every Python
this project runs on (one abi3 wheel), whose IVF search takes a per-query `IDSelector`, so a
payload filter is applied while the lists are scanned and never returns a row outside it. Its
build is cheap next to a graph's: k-means on a sample (about a second at 100k x 384 on this
2-core machine) and one assignment per row; HNSW took several times longer and cannot drop a
row, which every edit of an entry needs.

Filters: a filter keeping a fraction f of the rows scans nprobe / f lists (as many selected
rows as an unfiltered search scans), up to all of them, which is the exact search of the
selected rows done inside faiss without copying them; and when the lists scanned hold fewer
selected rows than asked for, the caller falls back to its exact scan of the selection.

Edits (`MatrixSnapshot.updated`): a new snapshot keeps the old index's centroids and the list of
every unchanged row, and only files the new or changed rows (`reassigned`); only a new
collection (a reindex) or `load` trains again. Centroids trained before a few edits still cut
the space well; the recall of a heavily edited snapshot recovers at the next reindex or
service start.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Lists scanned per query by default (at 100k rows: ~1,265 lists of ~80 rows, ~4% scanned).
NPROBE = 48
# Rows are scanned as 8-bit codes (a quarter of the memory traffic of float32, about twice as
# fast at 384 dimensions); more rows than asked for are proposed, and rescored exactly: twice as
# many for a small k, at most `_MARGIN` more for a large one (a fused search's prefetch of 256:
# 8-bit scores misorder rows only near the cut, and proposing 512 instead of 320 cost ~0.3 ms
# per fused search at 100k rows for the same results, `python -m tools.matrix_latency`).
_MARGIN = 64
_RANGE_SAMPLE = 20_000
# Training points per centroid (k-means on a sample), and k-means iterations: measured at 100k x
# 384 on this machine, ~1 s per matrix with recall@24 unchanged against a larger sample.
_SAMPLE_PER_LIST = 16
_KMEANS_ITERATIONS = 8


try:
    import faiss
except ImportError:  # a lean install (e.g. a carried GPU environment): the exact scan serves
    faiss = None  # type: ignore[assignment]

# Whether faiss-cpu is installed; without it every snapshot scans exactly (`matrix.py`).
AVAILABLE = faiss is not None

# OpenMP threads faiss may use in each calling thread (None: its default, every core).
_threads: int | None = None


def limit_threads(threads: int | None) -> None:
    """Cap the OpenMP threads of faiss's work in this process (the service: FAQ_BLAS_THREADS).

    OpenMP's thread count is a per-thread setting, so a process-wide cap at startup reaches
    only the thread that set it; the cap is applied again by every call here, in the thread
    that makes it. Idle OpenMP threads spin after each parallel region and take the cores ONNX
    Runtime and the request threads need, as OpenBLAS's did.
    """
    global _threads
    _threads = threads


def _cap() -> None:
    if _threads is not None and faiss is not None:
        faiss.omp_set_num_threads(_threads)


def nlist_for(rows: int) -> int:
    """The number of lists for `rows` rows: ~4 sqrt(n), faiss's usual range."""
    return max(1, min(rows, round(4 * math.sqrt(rows))))


def proposed(k: int) -> int:
    """How many rows the index proposes for the `k` best."""
    return k + min(k, _MARGIN)


class IvfIndex:
    """An IVF-SQ8 inner-product index over one normalised matrix; ids are row positions."""

    def __init__(
        self,
        centroids: NDArray[np.float32],
        lists: NDArray[np.int64],
        matrix: NDArray[np.float32],
        ranges: NDArray[np.float32] | None = None,
    ) -> None:
        self.centroids = centroids
        self.lists = lists  # the list of each row
        self.rows = len(matrix)
        dim = centroids.shape[1]
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(centroids)
        self._quantizer = quantizer  # owned by this object: faiss keeps only a pointer
        index = faiss.IndexIVFScalarQuantizer(
            quantizer,
            dim,
            len(centroids),
            faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
            False,  # rows coded as they are, not as residuals from their centroid
        )
        if ranges is None:
            # The quantizer holds its centroids: this trains only the 8-bit ranges per dimension.
            step = max(1, len(matrix) // _RANGE_SAMPLE)
            index.train(np.ascontiguousarray(matrix[::step]))
            ranges = faiss.vector_to_array(index.sq.trained).astype(np.float32)
        else:
            faiss.copy_array_to_vector(ranges, index.sq.trained)
            index.is_trained = True
        self.ranges = ranges
        if len(matrix):
            # The lists are known: file the rows without searching the quantizer again.
            index.add_core(len(matrix), faiss.swig_ptr(matrix), None, faiss.swig_ptr(lists))
        self._index = index

    @property
    def nlist(self) -> int:
        return len(self.centroids)

    @classmethod
    def train(
        cls, matrix: NDArray[np.float32], *, nlist: int | None = None, seed: int = 0
    ) -> IvfIndex:
        """k-means centroids from a sample of `matrix`, then every row filed under its nearest."""
        _cap()
        n, dim = matrix.shape
        lists = nlist or nlist_for(n)
        rng = np.random.default_rng(seed)
        size = min(n, lists * _SAMPLE_PER_LIST)
        sample = matrix if size == n else matrix[np.sort(rng.choice(n, size, replace=False))]
        kmeans = faiss.Kmeans(
            dim,
            lists,
            niter=_KMEANS_ITERATIONS,
            spherical=True,
            seed=seed,
            min_points_per_centroid=1,
            max_points_per_centroid=_SAMPLE_PER_LIST * 4,
        )
        kmeans.train(np.ascontiguousarray(sample))
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        return cls(centroids, _assign(centroids, matrix), matrix)

    def reassigned(self, matrix: NDArray[np.float32], previous: NDArray[np.intp]) -> IvfIndex:
        """The index of a new matrix with the same centroids: row i keeps the list of this
        index's row `previous[i]`, and rows with `previous[i] < 0` (new or changed) are filed
        under their nearest centroid."""
        _cap()
        lists = np.empty(len(matrix), dtype=np.int64)
        known = previous >= 0
        lists[known] = self.lists[previous[known]]
        fresh = np.flatnonzero(~known)
        if len(fresh):
            lists[fresh] = _assign(self.centroids, np.ascontiguousarray(matrix[fresh]))
        return IvfIndex(self.centroids, lists, matrix, self.ranges)

    def search(
        self,
        query: NDArray[np.float32],
        k: int,
        nprobe: int,
        selector: Selector | None = None,
    ) -> NDArray[np.intp]:
        """Up to `proposed(k)` rows (within `selector` when given) among the lists scanned,
        by their 8-bit inner product with `query`: the caller rescores them exactly and keeps
        its `k` best. Fewer when the lists scanned hold fewer rows."""
        if k <= 0 or self.rows == 0:
            return np.empty(0, dtype=np.intp)
        _cap()
        probe = nprobe if selector is None else math.ceil(nprobe / max(selector.fraction, 1e-9))
        params: Any = faiss.SearchParametersIVF()
        params.nprobe = max(1, min(self.nlist, probe))
        if selector is not None:
            params.sel = selector.faiss
        _, labels = self._index.search(query.reshape(1, -1), proposed(k), params=params)
        found = np.asarray(labels[0], dtype=np.intp)
        return found[found >= 0]


class Selector:
    """A filter's rows as a faiss bitmap selector (kept with the bitmap it points into)."""

    def __init__(self, selection: NDArray[np.intp], rows: int) -> None:
        mask = np.zeros(rows, dtype=bool)
        mask[selection] = True
        self._bitmap = np.packbits(mask, bitorder="little")
        self.faiss = faiss.IDSelectorBitmap(rows, faiss.swig_ptr(self._bitmap))
        self.fraction = len(selection) / rows if rows else 0.0


def _assign(centroids: NDArray[np.float32], matrix: NDArray[np.float32]) -> NDArray[np.int64]:
    """The nearest centroid (largest inner product) of every row."""
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    _, nearest = quantizer.search(matrix, 1)
    return np.ascontiguousarray(nearest[:, 0], dtype=np.int64)
