"""Approximate candidates for a large snapshot: an inverted-file index (faiss IVF-PQ fast scan).

Above `MatrixSnapshot`'s row threshold (`matrix.ANN_THRESHOLD`), a dense part's prefetch no
longer scans every row: the way Qdrant switches from a full scan to its HNSW graph above
`full_scan_threshold`, each normalised matrix gets an IVF index, `nlist` k-means centroids with
every row filed under its nearest one, and a query scans only the rows of its `nprobe` best
centroids. The index only proposes rows: their scores are the exact float32 dot products
computed again by the snapshot (rescoring), so a score is never approximate, only which rows
make a prefetch is (recall).

The lists hold each row as a 4-bit product-quantizer code (faiss's fast scan: one 16-entry
table per 4 dimensions, 48 bytes per row at 384 dimensions, read 32 rows at a time from SIMD
registers). The codes rank rows coarsely, so the index proposes many more rows than wanted
(`proposed`) and the snapshot keeps the best by exact scores. Measured at 100k x 384
(`python -m tools.matrix_latency`, back to back) against 8-bit scalar codes (IVF-SQ8, the
previous index, 384 bytes per row), with the fused search's candidate cut of `matrix.py`:
fused p50 1.50 -> 1.17 ms, filtered 2.52 -> 1.51 ms, question-only 0.64 -> 0.47 ms,
recall@24 unchanged (0.986); the codes of a 100k snapshot's two indexes take 10 MB instead
of 77 MB. The proposed rows are rescored in place (`inner_products`, no copy of the rows),
and the lexical prefetch's top 256 of 100k scores is found by a sampled cut
(`matrix._best_unordered`): fused p50 1.00 -> 0.67 ms, filtered 1.15 -> 0.92 ms,
question-only 0.42 -> 0.33 ms, recall unchanged (the same tool, back to back).

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

Edits (`MatrixSnapshot.updated`): a new snapshot keeps the old index's centroids and
codebooks and files every row again under its nearest centroid (`reassigned`: an unchanged
row lands in its old list; faiss's add with known lists does not pack fast-scan codes, so an
edit at 100k rows took 4.04 s instead of 2.91 s, `tools.matrix_latency`); only a new
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
# Rows are scanned as 4-bit product-quantizer codes, which rank rows coarsely; so many more
# rows than asked for are proposed, and rescored exactly: four times k, at least
# `_PROPOSE_MIN` (with 8 x k and at least 512 a filtered search's recall fell, at 100k x 384
# and in tests/index_builder/test_matrix_ann.py).
_PROPOSE_FACTOR = 4
_PROPOSE_MIN = 1024
# Rows the codebooks are trained on (a sample of the matrix).
_CODEBOOK_SAMPLE = 20_000
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
    return max(_PROPOSE_FACTOR * k, _PROPOSE_MIN)


class IvfIndex:
    """An IVF-PQ fast-scan inner-product index over one normalised matrix; ids are row positions."""

    def __init__(
        self,
        centroids: NDArray[np.float32],
        matrix: NDArray[np.float32],
        codebooks: NDArray[np.float32] | None = None,
    ) -> None:
        self.centroids = centroids
        self.rows = len(matrix)
        dim = centroids.shape[1]
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(centroids)
        self._quantizer = quantizer  # owned by this object: faiss keeps only a pointer
        index = faiss.IndexIVFPQFastScan(
            quantizer, dim, len(centroids), subquantizers(dim), 4, faiss.METRIC_INNER_PRODUCT
        )
        index.by_residual = False  # rows coded as they are: one code table for every list
        if codebooks is None:
            # The quantizer holds its centroids: this trains only the product quantizer.
            step = max(1, len(matrix) // _CODEBOOK_SAMPLE)
            index.train(np.ascontiguousarray(matrix[::step]))
            codebooks = faiss.vector_to_array(index.pq.centroids).astype(np.float32)
        else:
            faiss.copy_array_to_vector(codebooks, index.pq.centroids)
            index.is_trained = True
        self.codebooks = codebooks
        if len(matrix):
            # Files every row under its nearest centroid and packs the codes in the 32-row
            # blocks the fast scan reads (faiss's generic add with known lists does not pack).
            index.add(matrix)
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
        return cls(np.ascontiguousarray(kmeans.centroids, dtype=np.float32), matrix)

    def reassigned(self, matrix: NDArray[np.float32]) -> IvfIndex:
        """The index of a new matrix (an edit) with this one's centroids and codebooks: every
        row is filed under its nearest centroid, so an unchanged row stays in its list."""
        _cap()
        return IvfIndex(self.centroids, matrix, self.codebooks)

    def search(
        self,
        query: NDArray[np.float32],
        k: int,
        nprobe: int,
        selector: Selector | None = None,
    ) -> NDArray[np.intp]:
        """Up to `proposed(k)` rows (within `selector` when given) among the lists scanned,
        by their coded inner product with `query`: the caller rescores them exactly and keeps
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


def inner_products(
    matrix: NDArray[np.float32], query: NDArray[np.float32], rows: NDArray[np.intp]
) -> NDArray[np.float32]:
    """`matrix[rows] @ query` in float32, each row read where it lies (faiss's
    `fvec_inner_products_by_idx`): numpy's fancy index first copies every row, which for the
    ~1,000 rows a search rescores at 384 dimensions cost as much again as the products
    (`python -m tools.matrix_latency`). The sums run in another order than BLAS's, so a score
    may differ from `matrix[rows] @ query` in its last bits (about 1e-7 on unit vectors)."""
    if matrix.dtype != np.float32 or not matrix.flags.c_contiguous or matrix.ndim != 2:
        raise ValueError("inner_products needs a C-contiguous 2-d float32 matrix")
    ids = np.ascontiguousarray(rows, dtype=np.int64)
    x = np.ascontiguousarray(query, dtype=np.float32)
    if x.shape != (matrix.shape[1],):
        raise ValueError(f"query of shape {x.shape} for {matrix.shape[1]} dimensions")
    out = np.empty(len(ids), dtype=np.float32)
    if len(ids) == 0:
        return out
    # faiss reads the rows unchecked: an id outside the matrix would read foreign memory.
    if int(ids.min()) < 0 or int(ids.max()) >= len(matrix):
        raise IndexError(f"row ids outside 0..{len(matrix) - 1}")
    _cap()
    # Defined in the compiled module faiss loads at import, which mypy does not see.
    faiss.fvec_inner_products_by_idx(  # type: ignore[attr-defined]
        faiss.swig_ptr(out),
        faiss.swig_ptr(x),
        faiss.swig_ptr(matrix),
        faiss.swig_ptr(ids),
        matrix.shape[1],
        1,
        len(ids),
    )
    return out


def subquantizers(dim: int) -> int:
    """Sub-vectors of the product quantizer: 4 dimensions each (96 at 384), 16 codes apiece."""
    return next(m for m in (dim // 4, dim // 2, dim) if m >= 1 and dim % m == 0)


class Selector:
    """A filter's rows as a faiss bitmap selector (kept with the bitmap it points into)."""

    def __init__(self, selection: NDArray[np.intp], rows: int) -> None:
        mask = np.zeros(rows, dtype=bool)
        mask[selection] = True
        self._bitmap = np.packbits(mask, bitorder="little")
        self.faiss = faiss.IDSelectorBitmap(rows, faiss.swig_ptr(self._bitmap))
        self.fraction = len(selection) / rows if rows else 0.0
