"""The embedded search: one version's vectors as normalised float32 matrices, searched exactly.

A `MatrixSnapshot` holds a version's vectors, its filter fields as integer codes and its hit
fields per row; a batch of queries is one matrix product per vector kind. The fused formula of
`fusion.py` is computed the way Qdrant evaluates that query: each part's best `prefetch_limit`
entries under the filter, the weighted sum with 0 for a part that did not return the entry.
Above `LARGE_ROWS` rows the dense parts are scored as one inner product with question + w x
answer, their best rows proposed by an IVF index (`ivf.py`) and rescored exactly.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from index_builder.faq import topic_of
from index_builder.store.base import Hit, Row, SearchSpec
from index_builder.store.fusion import Retrieval
from index_builder.store.ivf import IvfIndex, Selector
from index_builder.store.lexical import idf

log = logging.getLogger(__name__)

_NO_VALUE = -1
# Filter selections kept per snapshot; the API's filters take few distinct values.
_MAX_SELECTIONS = 256
# A filter: (lang, market), None = any.
_FilterKey = tuple[str | None, str | None]
_V = TypeVar("_V")
# Above this many rows a fused search takes the IVF path (`MatrixSnapshot._search_large`); below
# it one exact pass is cheap, and the parts are prefetched separately, as Qdrant does.
LARGE_ROWS = 20_000
# Dense candidates the IVF index proposes: twice the top_k, at least this many (the 8-bit codes
# rank rows coarsely, and a row just below the dense top_k can make it with its lexical part).
PROPOSED_MIN = 40
# Lexical tokens in more than this share of the rows are also kept as dense rows, up to this many.
_DENSE_SHARE = 0.1
_DENSE_TOKENS = 64
# A top-k of a row this long (and k at least 64, at most an eighth of it) first cuts the row
# by a threshold from a sample (`_best_unordered`); the sample's rank read as the threshold.
_SAMPLED_TOP_MIN_ROWS = 8192
_SAMPLE_RANK = 32


def normalise(vectors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Rows scaled to unit length (a zero row stays zero), as float32, C-contiguous."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


# One entry's sparse vector: token ids and weights.
Sparse = tuple[Sequence[int], Sequence[float]]


class FlatSparse(NamedTuple):
    """Every entry's sparse vector in three arrays (no Python object per token): tokens per row,
    then all tokens and weights."""

    lengths: NDArray[np.intp]
    tokens: NDArray[np.int64]
    weights: NDArray[np.float32]

    @classmethod
    def of(cls, docs: Sequence[Sparse]) -> FlatSparse:
        lengths = np.fromiter((len(t) for t, _ in docs), dtype=np.intp, count=len(docs))
        if any(len(w) != len(t) for t, w in docs):
            raise ValueError("a lexical vector has as many weights as token ids")
        total = int(lengths.sum())
        return cls(
            lengths,
            np.fromiter((t for ts, _ in docs for t in ts), dtype=np.int64, count=total),
            np.fromiter((w for _, ws in docs for w in ws), dtype=np.float32, count=total),
        )

    def rows(self) -> list[Sparse]:
        ends = np.cumsum(self.lengths).tolist()
        tokens, weights = self.tokens.tolist(), self.weights.tolist()
        return [(tokens[a:b], weights[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]

    def __len__(self) -> int:
        return len(self.lengths)


class _Postings:
    """The lexical vectors of a snapshot by token: rows and weights times Qdrant's IDF.

    The most frequent tokens are also kept as one dense row of weights each: adding a contiguous
    row is several times cheaper than scattering as many postings, and the same float32
    additions in the same order (a row without the token adds 0), so the scores are identical.
    """

    def __init__(self, docs: FlatSparse | Sequence[Sparse]) -> None:
        flat = docs if isinstance(docs, FlatSparse) else FlatSparse.of(docs)
        n = len(flat)
        self.n = n
        lengths, tokens, weights = flat
        rows = np.repeat(np.arange(n, dtype=np.intp), lengths)
        order = np.argsort(tokens, kind="stable")  # by token, each token's rows ascending
        tokens, rows, weights = tokens[order], rows[order], weights[order]
        starts = np.flatnonzero(np.r_[True, tokens[1:] != tokens[:-1]]) if len(tokens) else ()
        bounds = [*(int(a) for a in starts), len(tokens)]
        self.tokens: dict[int, tuple[NDArray[np.intp], NDArray[np.float32]]] = {}
        for a, b in itertools.pairwise(bounds):
            token_rows = rows[a:b]
            self.tokens[int(tokens[a])] = (
                token_rows,
                weights[a:b] * np.float32(idf(len(token_rows), n)),
            )
        frequent = sorted(
            (t for t, (r, _) in self.tokens.items() if len(r) > _DENSE_SHARE * n),
            key=lambda t: -len(self.tokens[t][0]),
        )[:_DENSE_TOKENS]
        self._dense: dict[int, NDArray[np.float32]] = {}
        for token in frequent:
            token_rows, token_weights = self.tokens[token]
            dense = np.zeros(n, dtype=np.float32)
            dense[token_rows] = token_weights
            self._dense[token] = dense

    def scores(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """BM25 score of every row for a query's distinct tokens. The rows sharing a token are
        exactly those that score above 0 (every tf weight and every IDF is positive)."""
        scores = np.zeros(self.n, dtype=np.float32)
        for token in tokens:
            dense = self._dense.get(token)
            if dense is not None:
                scores += dense
                continue
            found = self.tokens.get(token)
            if found is not None:
                scores[found[0]] += found[1]
        return scores

    def best(
        self, tokens: Sequence[int], k: int, selection: NDArray[np.intp] | None
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The `k` best rows sharing a token with the query (within `selection`), ascending,
        and their scores: the lexical prefetch."""
        scores = self.scores(tokens)
        values = scores if selection is None else scores[selection]
        best, top = _top(values, k)
        # Rows sharing no token score 0 and are not returned (a sparse prefetch's rule).
        best = best[top > 0]
        found = np.sort(best if selection is None else selection[best])
        return found, scores[found]


class MatrixSnapshot:
    """An immutable, searchable copy of one collection."""

    def __init__(
        self,
        collection: str,
        point_ids: Sequence[str],
        vectors: NDArray[np.floating[Any]],
        rows: Sequence[Row],
        *,
        dim: int | None = None,
        answers: NDArray[np.floating[Any]] | None = None,
        lexical: Sequence[Sparse] | FlatSparse | None = None,
        large_rows: int = LARGE_ROWS,
        answer_weight: float = Retrieval.answer_weight,
    ) -> None:
        """`large_rows`: above this many rows a fused search with `answer_weight` (the served
        weight) scores the dense parts as one product with question + w x answer."""
        if len(point_ids) != len(rows) or len(rows) != len(vectors):
            raise ValueError("point ids, vectors and rows differ in length")
        if (answers is None) != (lexical is None):
            raise ValueError("a hybrid snapshot needs both answer and lexical vectors")
        self.collection = collection
        width = dim or (vectors.shape[1] if len(vectors) else 0)
        empty = np.zeros((0, width), dtype=np.float32)
        self.matrix = normalise(vectors) if len(rows) else empty
        self.answers: NDArray[np.float32] | None = None
        self._postings: _Postings | None = None
        if answers is not None and lexical is not None:
            if len(answers) != len(rows) or len(lexical) != len(rows):
                raise ValueError("answer or lexical vectors differ in length from the points")
            self.answers = normalise(answers) if len(rows) else empty
            self._postings = _Postings(lexical)
        self.rows: tuple[Row, ...] = tuple(rows)
        self._codes: dict[str, tuple[dict[str, int], NDArray[np.int32]]] = {
            "lang": _codes(r.lang for r in self.rows),
            "market": _codes(r.market for r in self.rows),
        }
        self._selections: dict[_FilterKey, NDArray[np.intp] | None] = {}
        self._selections_lock = threading.Lock()
        self.answer_weight = answer_weight
        self._ivf: IvfIndex | None = None
        self._selectors: dict[_FilterKey, Selector] = {}
        if len(self.rows) > large_rows and self.answers is not None and answer_weight > 0:
            # The dense formula's vector per entry, less its scale 1 / (1 + w) (no ranking
            # changes); not kept: `_dense` rescores the candidates.
            fused = self.matrix + np.float32(answer_weight) * self.answers
            self._ivf = IvfIndex(np.ascontiguousarray(fused))

    def _uncut(self, retrieval: Retrieval) -> bool:
        """Whether a fused search takes the large-index path (`_search_large`)."""
        return self._ivf is not None and retrieval.answer_weight == self.answer_weight

    @functools.cached_property
    def _topic_rows(self) -> dict[tuple[str, str], tuple[int, ...]]:
        """The rows of each (topic, language) (the grouping's topic rule)."""
        found: dict[tuple[str, str], list[int]] = {}
        for i, row in enumerate(self.rows):
            found.setdefault((row.topic or topic_of(row.id), row.lang), []).append(i)
        return {key: tuple(rows) for key, rows in found.items()}

    def entry_in(
        self, vector: NDArray[np.float32], topic: str, lang: str, market: str | None = None
    ) -> Hit | None:
        """The entry of `topic` in `lang` (in `market` when given, as the search filter
        matches), or None when it has none: the grouping shows it for a topic that ranked by
        another language's entry. Of several, the one whose question is closest to the query
        (`vector`, normalised); its score is that cosine."""
        rows = [
            r
            for r in self._topic_rows.get((topic, lang), ())
            if market is None or self.rows[r].market == market
        ]
        if not rows:
            return None
        cosines = self.matrix[rows] @ vector.astype(np.float32)
        best = int(np.argmax(cosines))
        return self.rows[rows[best]].hit(float(cosines[best]))

    def __len__(self) -> int:
        return len(self.rows)

    # --- searching ----------------------------------------------------------------------------

    def _selection(self, lang: str | None, market: str | None) -> NDArray[np.intp] | None:
        """The rows a filter keeps (None = all), computed once per snapshot and filter."""
        key = (lang, market)
        try:
            return self._selections[key]
        except KeyError:
            pass
        mask: NDArray[np.bool_] | None = None
        for field, value in (("lang", lang), ("market", market)):
            if value is None:
                continue
            codes, column = self._codes[field]
            code = codes.get(value)
            if code is None:
                return np.empty(0, dtype=np.intp)  # no entry has this value: nothing matches
            match = column == code
            mask = match if mask is None else mask & match
        selection = None if mask is None else np.flatnonzero(mask).astype(np.intp)
        self._remember(self._selections, key, selection)
        return selection

    def _remember(self, cache: dict[_FilterKey, _V], key: _FilterKey, value: _V) -> None:
        """Keep a per-filter value; a cache that reached `_MAX_SELECTIONS` starts over."""
        with self._selections_lock:
            if len(cache) >= _MAX_SELECTIONS:
                cache.clear()
            cache[key] = value

    def search_batch(
        self,
        vectors: NDArray[np.floating[Any]],
        specs: Sequence[SearchSpec],
        retrieval: Retrieval | None = None,
    ) -> list[list[Hit]]:
        """The best entries for each of `vectors`, `specs[i]` = (top_k, lang, market, lexical)
        of `vectors[i]`: one matrix product per vector kind for the whole batch. Cosine on the
        question vector; in a hybrid snapshot with `retrieval` fused, the fused formula."""
        # Plain (top_k, lang, market) tuples are accepted too.
        specs = [SearchSpec(*spec) for spec in specs]
        queries = normalise(np.asarray(vectors).reshape(len(specs), -1))
        if len(specs) == 0:
            return []
        if queries.shape[1] != self.matrix.shape[1]:
            raise ValueError(
                f"query vectors have {queries.shape[1]} dimensions, collection "
                f"{self.collection!r} has {self.matrix.shape[1]}"
            )
        fusion = retrieval if retrieval is not None and retrieval.fused and self._postings else None
        if not self.rows:
            return [[] for _ in specs]
        if fusion is not None and self._uncut(fusion):
            return self._search_large(queries, specs, fusion)
        scores = _products(self.matrix, queries)
        answer_scores = None
        if fusion is not None and fusion.answer_weight > 0 and self.answers is not None:
            answer_scores = _products(self.answers, queries)
        out: list[list[Hit]] = []
        for i, spec in enumerate(specs):
            if spec.limit <= 0:
                out.append([])
                continue
            selection = self._selection(spec.lang, spec.market)
            if fusion is not None:
                answer = None if answer_scores is None else answer_scores[i]
                out.append(self._fuse(spec, selection, scores[i], answer, fusion))
                continue
            found, row = _top(scores[i] if selection is None else scores[i, selection], spec.limit)
            out.append(self._hits(found if selection is None else selection[found], row))
        return out

    def _hits(self, rows: NDArray[np.intp], scores: NDArray[np.float32]) -> list[Hit]:
        return [self.rows[r].hit(float(s)) for r, s in zip(rows, scores, strict=True)]

    def _fuse(
        self,
        spec: SearchSpec,
        selection: NDArray[np.intp] | None,
        question: NDArray[np.float32],
        answer: NDArray[np.float32] | None,
        retrieval: Retrieval,
    ) -> list[Hit]:
        """One fused search, as Qdrant evaluates the formula query, from its query's question
        and answer scores."""
        wq, wa, wl = retrieval.weights(bool(spec.lexical))
        fetch = retrieval.prefetch_limit(spec.limit)
        n = len(self.rows) if selection is None else len(selection)
        total = np.zeros(n, dtype=np.float32)
        candidate = np.zeros(n, dtype=bool)
        parts: list[tuple[float, NDArray[np.float32], NDArray[np.bool_] | None]] = [
            (wq, question, None)
        ]
        if answer is not None and wa > 0:
            parts.append((wa, answer, None))
        if wl > 0 and self._postings is not None:
            lexical = self._postings.scores(spec.lexical)
            parts.append((wl, lexical, lexical > 0))
        for weight, part, eligible in parts:
            values = part if selection is None else part[selection]
            if eligible is not None:
                # A sparse prefetch returns only entries sharing a token with the query.
                allowed = np.flatnonzero(eligible if selection is None else eligible[selection])
                best = allowed[_prefetched(values[allowed], fetch)]
            else:
                best = _prefetched(values, fetch)
            total[best] += np.float32(weight) * values[best]
            candidate[best] = True
        pool = np.flatnonzero(candidate)
        best, row = _top(total[pool], spec.limit)
        found = pool[best]
        return self._hits(found if selection is None else selection[found], row)

    def _search_large(
        self, queries: NDArray[np.float32], specs: Sequence[SearchSpec], retrieval: Retrieval
    ) -> list[list[Hit]]:
        """Above `LARGE_ROWS` with the served answer weight: the dense parts uncut, as one
        inner product with the fused rows (question + w x answer: wq x q.(Q + wA) = wq q.Q +
        wa q.A), their best rows proposed by the IVF index (`ivf.py`, exact scores); the lexical
        part as Qdrant's prefetch gives it, its rows scored on the dense parts too."""
        assert self._ivf is not None
        out: list[list[Hit]] = []
        for query, spec in zip(queries, specs, strict=True):
            selection = self._selection(spec.lang, spec.market)
            available = len(self.rows) if selection is None else len(selection)
            wanted = min(spec.limit, available)
            if wanted <= 0:
                out.append([])
                continue
            wq, _, wl = retrieval.weights(bool(spec.lexical))
            proposed = min(max(2 * wanted, PROPOSED_MIN), available)
            pool = self._ivf.search(query, proposed, self._selector(spec, selection))
            if pool is None or len(pool) < proposed:
                # Every list would be scanned, or the lists scanned hold too few of the
                # filter's rows: an exact pass over them.
                rows = np.arange(len(self.rows)) if selection is None else selection
                best, _ = _top(self._dense(rows, query), wanted)
                pool = rows[best]
            if wl > 0 and self._postings is not None:
                fetch = retrieval.prefetch_limit(spec.limit)
                lexical_rows, lexical = self._postings.best(spec.lexical, fetch, selection)
                pool = np.union1d(pool, lexical_rows)
            else:
                pool = np.sort(pool)
            # Exact scores of every candidate (the codes only chose them).
            total = np.float32(wq) * self._dense(pool, query)
            if wl > 0 and self._postings is not None:
                total[np.searchsorted(pool, lexical_rows)] += np.float32(wl) * lexical
            best, scores = _top(total, spec.limit)
            out.append(self._hits(pool[best], scores))
        return out

    def _dense(self, rows: NDArray[np.intp], query: NDArray[np.float32]) -> NDArray[np.float32]:
        """q.question + w x q.answer of `rows`, the served weight's dense parts unscaled."""
        assert self.answers is not None
        weight = np.float32(self.answer_weight)
        return np.asarray(self.matrix[rows] @ query + weight * (self.answers[rows] @ query))

    def _selector(self, spec: SearchSpec, selection: NDArray[np.intp] | None) -> Selector | None:
        """The faiss selector of a filter (None = all rows), built once per snapshot and filter."""
        if selection is None:
            return None
        key = (spec.lang, spec.market)
        found = self._selectors.get(key)
        if found is None:
            found = Selector(selection, len(self.rows))
            self._remember(self._selectors, key, found)
        return found


def _products(matrix: NDArray[np.float32], queries: NDArray[np.float32]) -> NDArray[np.float32]:
    # A lone query: one matrix-vector product (BLAS gemv), one pass over the matrix.
    product = (matrix @ queries[0])[None, :] if len(queries) == 1 else queries @ matrix.T
    return np.asarray(product, dtype=np.float32)


def _prefetched(part: NDArray[np.float32], fetch: int) -> NDArray[np.intp]:
    """Positions in one part's prefetch of `fetch`, in no particular order: all of them when
    the part has no more (nothing to rank: a small FAQ's every search), else its best."""
    if part.shape[0] <= fetch:
        return np.arange(part.shape[0], dtype=np.intp)
    return _top(part, fetch)[0]


def _top(row: NDArray[np.float32], top_k: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Positions of the `top_k` best of `row` and their scores, best first."""
    k = min(top_k, row.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32)
    best = _best_unordered(row, k) if k < row.shape[0] else np.arange(k)
    # Best first; equal scores later row first, as qdrant-client's local mode orders them
    # (argsort reversed), and never depending on the batch.
    best = best[np.lexsort((-best, -row[best]))]
    return best.astype(np.intp), row[best]


def _best_unordered(row: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Positions of the `k` best of `row` (0 < k < len(row)), in no order.

    A long row is first cut by a threshold read from a strided sample (its `_SAMPLE_RANK`-th
    best, which about 2k scores of the row reach): a comparison pass is several times cheaper
    than partitioning the whole row, which happens only when fewer than `k` pass."""
    n = row.shape[0]
    step = 2 * k // _SAMPLE_RANK
    if n >= _SAMPLED_TOP_MIN_ROWS and step >= 4 and 8 * k <= n:
        sample = row[::step]
        # A sort, not np.partition: lexical scores are mostly 0 and few distinct values, on
        # which numpy's introselect degrades and is far slower than sorting the sample.
        threshold = np.sort(sample)[-_SAMPLE_RANK]
        above = np.flatnonzero(row >= threshold)
        if len(above) >= k:
            return above[np.argpartition(-row[above], k - 1)[:k]]
    return np.argpartition(-row, k - 1)[:k]


def _codes(values: Iterable[str | None]) -> tuple[dict[str, int], NDArray[np.int32]]:
    """Integer codes of a payload field per row (`_NO_VALUE` where it has none)."""
    codes: dict[str, int] = {}
    column = [_NO_VALUE if v is None else codes.setdefault(v, len(codes)) for v in values]
    return codes, np.asarray(column, dtype=np.int32)
