"""Approximate candidates for a large snapshot: an inverted-file index (faiss IVF-PQ fast scan).

Above `MatrixSnapshot`'s row threshold (`matrix.ANN_THRESHOLD`), a dense part's prefetch no
longer scans every row: the way Qdrant switches from a full scan to its HNSW graph above
`full_scan_threshold`, each normalised matrix gets an IVF index, `nlist` k-means centroids with
every row filed under its nearest one, and a query scans only the rows of its `nprobe` best
centroids. The index only proposes rows: their scores are the exact float32 dot products
computed again by the snapshot (rescoring), so a score is never approximate, only which rows
make a prefetch is (recall).

The lists hold each row as a 4-bit product-quantizer code of its residual from its list's
centroid (faiss's fast scan: one 16-entry table per 2 dimensions, 96 bytes per row at 384
dimensions, read 32 rows at a time from SIMD registers). The codes rank rows coarsely, so the
index proposes more rows than wanted (`proposed`) and the snapshot keeps the best by exact
scores, computed in place (`inner_products`, no copy of the rows).

Measured at 100k entries on real vectors (the synthetic FAQ of `make bench-100k`, the shopper
dev queries, the int8 model; `make ann-recall`: recall of the fused search's fetch of 40
against the formula with its dense parts uncut), back to back with the previous codes (rows
coded as they are, one table per 4 dimensions, 48 bytes per row, 1,024 rows proposed at
least): recall@5 0.856 -> 0.935 (by score within 1e-3: 0.929 -> 0.968), recall@40 0.695 ->
0.882, filtered by the query's language recall@5 0.921 -> 0.989, p50 0.71 -> 0.62 ms. The
8-bit scalar codes before them (IVF-SQ8, d87285e) read 0.938 / 0.971 / 0.895 / 0.993 at
0.80 ms. Random vectors (`python -m tools.matrix_latency`) had hidden the loss: recall@24
0.986 with every one of these codes.

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
edit at 100k rows takes 4.4 s, where IVF-SQ8 took 2.9 s, `tools.matrix_latency`); only a new
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
# Rows are scanned as 4-bit product-quantizer codes, which rank rows coarsely; so more rows
# than asked for are proposed, and rescored exactly: four times k, at least `_PROPOSE_MIN`
# (1,024 cost 0.2 ms more per fused search at 100k rows for recall@5 0.936 instead of 0.935,
# `make ann-recall`).
_PROPOSE_FACTOR = 4
_PROPOSE_MIN = 512
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
        # The centroids held as float16: the quantizer only chooses which lists a query scans
        # (and the centroid a row's code is a residual from), and under load its float32 copy
        # (1.9 MB at 100k rows) was read from memory on every search, the model having evicted
        # it from the caches. Half the bytes: an IVF search after a model run 255 -> 210 us,
        # the same rows proposed but 1.3% (scratch, 100k index); `make ann-recall` unchanged
        # (recall@5 0.935 -> 0.934, recall@40 0.882 -> 0.882, by score 0.968 -> 0.969).
        quantizer = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        quantizer.add(centroids)
        self._quantizer = quantizer  # owned by this object: faiss keeps only a pointer
        index = faiss.IndexIVFPQFastScan(
            quantizer, dim, len(centroids), subquantizers(dim), 4, faiss.METRIC_INNER_PRODUCT
        )
        # Residuals from the list's centroid: a row's code spends its bits on what tells it
        # from its neighbours, which on real vectors (clustered, near-duplicate templates)
        # ranked the true best rows far better than coding rows as they are.
        index.by_residual = True
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
    """Sub-vectors of the product quantizer: 2 dimensions each (192 at 384), 16 codes apiece
    (4 dimensions each halved the codes and lost recall on real vectors, `tools.ann_recall`)."""
    return next(m for m in (dim // 2, dim) if m >= 1 and dim % m == 0)


class Selector:
    """A filter's rows as a faiss bitmap selector (kept with the bitmap it points into)."""

    def __init__(self, selection: NDArray[np.intp], rows: int) -> None:
        mask = np.zeros(rows, dtype=bool)
        mask[selection] = True
        self._bitmap = np.packbits(mask, bitorder="little")
        self.faiss = faiss.IDSelectorBitmap(rows, faiss.swig_ptr(self._bitmap))
        self.fraction = len(selection) / rows if rows else 0.0
