"""The embedded search: one collection's vectors as one normalised float32 matrix.

qdrant-client's local mode scores every stored vector in Python/NumPy per query and recomputes
their norms each time (about 140 ms per query at 100k entries). Here a collection is read once
into a `MatrixSnapshot`: the vectors normalised once into one C-contiguous float32 matrix, the
payload fields the API filters on (`lang`, `market`) as integer codes, and the hit fields per
row. A batch of queries is then one matrix product (BLAS), each query's filter a row selection
computed once per snapshot and filter, and its top_k an `argpartition` of its row.

A snapshot is a read cache of a collection in the store, which stays the source of truth
(versioned collections, alias, metadata, build states): `FaqIndex` keys it by the collection
name and a counter of the point writes it made, and builds a new one when either moves. It is
never changed in place: edits make a new snapshot (`updated`), so searches running on the old
one finish on a consistent copy.

A collection with answer and lexical vectors (`fusion.HYBRID_LAYOUT`) is searched with the fused
formula of `index_builder.store.fusion`, computed the way Qdrant evaluates that query: each
part's best `prefetch_limit` entries under the filter (the lexical part: entries sharing a token,
scored by BM25 with Qdrant's IDF over the snapshot), the weighted sum with 0 for a part that did
not return the entry, best first.

Above `ann_threshold` rows (`ANN_THRESHOLD`, a constructor argument) the dense parts no longer
scan every row: candidates come from IVF indexes (`index_builder.store.ann`), and the rows they
propose are scored again exactly here, so scores are exact and only which rows are found is
approximate (recall). A plain search's top_k comes from an index over the question matrix. A
fused search's two dense parts come from one index over their weighted sum, question + w x
answer (`answer_weight`, the served weight, given when the snapshot is built): the dense part
of the formula is one inner product with that sum, so one scan finds the entries that score
best on both together (two scans cost twice as much and found fewer of the exact path's best:
at 100k rows recall@24 0.944 -> 0.986, fused p50 2.06 -> 1.50 ms, `tools.matrix_latency`). Each
candidate gets both dense parts in full, and the lexical part as Qdrant's prefetch gives it
(exactly as below). A query with another answer weight is proposed rows by the same index and
scored with its own weights. At or below the threshold every search is the exact scan above,
row for row, Qdrant's evaluation included.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient

from index_builder.faq import topic_of
from index_builder.lexical import idf
from index_builder.store import ann
from index_builder.store.ann import NPROBE, IvfIndex, Selector
from index_builder.store.fusion import ANSWER, LEXICAL, QUESTION, Retrieval
from index_builder.store.records import Hit, SearchSpec

log = logging.getLogger(__name__)

_SCROLL_PAGE = 4096
_NO_VALUE = -1
# Filter selections kept per snapshot; the API's filters take few distinct values.
_MAX_SELECTIONS = 256
# A filter: (lang, market), None = any.
_FilterKey = tuple[str | None, str | None]
_V = TypeVar("_V")
# Snapshots with more rows than this search their dense vectors through an IVF index (Qdrant's
# `full_scan_threshold` plays the same part; its default is 10,000 KB of vectors, ~6,700 x 384).
# Below it one exact pass costs about 1.4 ms at 384 dimensions (20,000 x 384 float32, 30 MB).
ANN_THRESHOLD = 20_000
# Lexical tokens in more than this share of the rows are also kept as dense rows, up to this many.
_DENSE_SHARE = 0.1
_DENSE_TOKENS = 64
# A top-k of a row this long (and k at least 64, at most an eighth of it) first cuts the row
# by a threshold from a sample (`_best_unordered`); the sample's rank read as the threshold.
_SAMPLED_TOP_MIN_ROWS = 8192
_SAMPLE_RANK = 32


@dataclass(frozen=True)
class _Row:
    """The hit fields of one entry (everything but the score), read once from its payload."""

    id: str
    question: str
    answer: str
    lang: str
    market: str | None
    tags: tuple[str, ...]
    topic: str

    @classmethod
    def from_payload(cls, point_id: object, payload: dict[str, Any] | None) -> _Row:
        # The payload layout FaqItem.payload() writes; the same reading as hit_from_point.
        p = payload or {}
        market = p.get("market")
        return cls(
            id=str(p.get("id", point_id)),
            question=str(p.get("question", "")),
            answer=str(p.get("answer", "")),
            lang=str(p.get("lang", "")),
            market=None if market is None else str(market),
            tags=tuple(p.get("tags") or ()),
            topic=str(p.get("topic") or ""),
        )

    def hit(self, score: float) -> Hit:
        return Hit(
            id=self.id,
            question=self.question,
            answer=self.answer,
            lang=self.lang,
            market=self.market,
            tags=list(self.tags),
            score=score,
            topic=self.topic,
        )


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


@dataclass(frozen=True)
class PointVectors:
    """What a snapshot keeps of one point: the question vector, and in a hybrid collection the
    answer vector and the lexical weights."""

    question: NDArray[np.floating[Any]]
    answer: NDArray[np.floating[Any]] | None = None
    lexical: Sparse | None = None

    @classmethod
    def of(cls, vector: Any) -> PointVectors:
        """From a point's `vector` as Qdrant returns or takes it (one list, or named ones)."""
        if not isinstance(vector, dict):
            return cls(np.asarray(vector, dtype=np.float32))
        sparse = vector.get(LEXICAL)
        return cls(
            np.asarray(vector[QUESTION], dtype=np.float32),
            np.asarray(vector[ANSWER], dtype=np.float32),
            None if sparse is None else (list(sparse.indices), list(sparse.values)),
        )


class _Postings:
    """The lexical vectors of a snapshot by token: rows and weights times Qdrant's IDF.

    The most frequent tokens (in more than `_DENSE_SHARE` of the rows, at most `_DENSE_TOKENS`
    of them) are also kept as one dense row of weights each: at 100k entries a query's common
    subwords have postings of tens of thousands of rows, and adding a contiguous row is several
    times cheaper than scattering as many postings (measured: ~0.6 ms -> ~0.2 ms per query for
    realistic Zipf-distributed tokens). The sums are the same float32 additions in the same
    order (a row without the token adds 0), so the scores are bit for bit those of the postings.
    """

    def __init__(self, docs: Sequence[Sparse]) -> None:
        n = len(docs)
        self.n = n
        lengths = np.fromiter((len(indices) for indices, _ in docs), dtype=np.intp, count=n)
        tokens = np.fromiter(
            (t for indices, _ in docs for t in indices), dtype=np.int64, count=int(lengths.sum())
        )
        weights = np.fromiter(
            (w for _, values in docs for w in values), dtype=np.float32, count=len(tokens)
        )
        if any(len(values) != length for (_, values), length in zip(docs, lengths, strict=True)):
            raise ValueError("a lexical vector has as many weights as token ids")
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
        rows: Sequence[_Row],
        *,
        dim: int | None = None,
        answers: NDArray[np.floating[Any]] | None = None,
        lexical: Sequence[Sparse] | None = None,
        ann_threshold: int = ANN_THRESHOLD,
        nprobe: int = NPROBE,
        answer_weight: float = Retrieval.answer_weight,
        previous: MatrixSnapshot | None = None,
    ) -> None:
        """`ann_threshold`: above this many rows the dense parts are searched through IVF
        indexes scanning `nprobe` lists per query; a hybrid snapshot's fused index is built for
        `answer_weight`. `previous`: an older snapshot whose IVF centroids and codebooks are
        reused (`updated`)."""
        if len(point_ids) != len(rows) or len(rows) != len(vectors):
            raise ValueError("point ids, vectors and rows differ in length")
        if (answers is None) != (lexical is None):
            raise ValueError("a hybrid snapshot needs both answer and lexical vectors")
        self.collection = collection
        width = dim or (vectors.shape[1] if len(vectors) else 0)
        empty = np.zeros((0, width), dtype=np.float32)
        self.matrix = normalise(vectors) if len(rows) else empty
        self.answers: NDArray[np.float32] | None = None
        self.lexical: tuple[Sparse, ...] | None = None
        self._postings: _Postings | None = None
        if answers is not None and lexical is not None:
            if len(answers) != len(rows) or len(lexical) != len(rows):
                raise ValueError("answer or lexical vectors differ in length from the points")
            self.answers = normalise(answers) if len(rows) else empty
            self.lexical = tuple(lexical)
            self._postings = _Postings(self.lexical)
        self.point_ids: tuple[str, ...] = tuple(point_ids)
        self.rows: tuple[_Row, ...] = tuple(rows)
        self._codes: dict[str, tuple[dict[str, int], NDArray[np.int32]]] = {
            "lang": _codes(r.lang for r in self.rows),
            "market": _codes(r.market for r in self.rows),
        }
        self._selections: dict[_FilterKey, NDArray[np.intp] | None] = {}
        self._selections_lock = threading.Lock()
        self._selectors: dict[_FilterKey, Selector] = {}
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self.answer_weight = answer_weight
        self._ann: IvfIndex | None = None
        self._fused_ann: IvfIndex | None = None
        # The fused index's rows, question + answer_weight x answer, kept to score its
        # candidates with one inner product instead of two (`_dense_parts`).
        self._fused_rows: NDArray[np.float32] | None = None
        if len(self.rows) > ann_threshold and _ann_available(len(self.rows)):
            self._ann = _ivf(self.matrix, previous, lambda s: s._ann)
            if self.answers is not None and answer_weight > 0:
                self._fused_rows = _weighted_sum(self.matrix, self.answers, answer_weight)
                # Built with the same weight as the previous one, or trained afresh.
                self._fused_ann = _ivf(
                    self._fused_rows,
                    previous,
                    lambda s: s._fused_ann if s.answer_weight == answer_weight else None,
                )

    @property
    def approximate(self) -> bool:
        """Whether dense candidates come from the IVF index (above the row threshold)."""
        return self._ann is not None

    @property
    def hybrid(self) -> bool:
        return self._postings is not None

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

    @classmethod
    def load(cls, client: QdrantClient, collection: str, **options: Any) -> MatrixSnapshot:
        """Read every point of `collection` (vectors and payloads) into a snapshot (`options`:
        the constructor's keyword arguments).

        In local mode the collection's own arrays are copied directly (measured at 30k entries:
        0.13 s instead of 2 s by scrolling, on a busy 2-core machine); anything
        unexpected in them, or a server, falls back to the public scroll API.
        """
        dim = _dim(client, collection)
        direct = _local_arrays(client, collection, dim)
        if direct is None:
            return cls._scroll(client, collection, dim, **options)
        ids, payloads, matrix, answers, lexical = direct
        rows = [_Row.from_payload(pid, payload) for pid, payload in zip(ids, payloads, strict=True)]
        return cls(
            collection, ids, matrix, rows, dim=dim, answers=answers, lexical=lexical, **options
        )

    @classmethod
    def _scroll(
        cls, client: QdrantClient, collection: str, dim: int, **options: Any
    ) -> MatrixSnapshot:
        ids: list[str] = []
        rows: list[_Row] = []
        points: list[PointVectors] = []
        offset: Any = None
        while True:
            page, offset = client.scroll(
                collection,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            for p in page:
                ids.append(str(p.id))
                rows.append(_Row.from_payload(p.id, p.payload))
                points.append(PointVectors.of(p.vector))
            if offset is None:
                break
        return cls._from_points(collection, ids, points, rows, dim, **options)

    @classmethod
    def _from_points(
        cls,
        collection: str,
        ids: Sequence[str],
        points: Sequence[PointVectors],
        rows: Sequence[_Row],
        dim: int,
        **options: Any,
    ) -> MatrixSnapshot:
        def stack(vectors: list[Any]) -> NDArray[np.float32]:
            return np.asarray(vectors if vectors else np.zeros((0, dim)), dtype=np.float32)

        hybrid = bool(points) and all(
            p.answer is not None and p.lexical is not None for p in points
        )
        return cls(
            collection,
            ids,
            stack([p.question for p in points]),
            rows,
            dim=dim,
            answers=stack([p.answer for p in points]) if hybrid else None,
            lexical=[p.lexical for p in points if p.lexical is not None] if hybrid else None,
            **options,
        )

    def updated(
        self,
        upserts: Sequence[tuple[str, PointVectors, dict[str, Any] | None]] = (),
        deletes: Iterable[str] = (),
    ) -> MatrixSnapshot:
        """A new snapshot with points (id, vectors, payload) replaced or added and ids removed."""
        position = {pid: i for i, pid in enumerate(self.point_ids)}
        gone = {position[pid] for pid in deletes if pid in position}
        current: dict[str, tuple[PointVectors, _Row]] = {}
        for pid, vectors, payload in upserts:
            current[pid] = (vectors, _Row.from_payload(pid, payload))
            gone.discard(position.get(pid, -1))
        ids: list[str] = []
        kept: list[PointVectors] = []
        rows: list[_Row] = []
        for pid, i in position.items():
            if i in gone:
                continue
            ids.append(pid)
            if pid in current:
                vectors, row = current.pop(pid)
            else:
                vectors, row = self._point(i), self.rows[i]
            kept.append(vectors)
            rows.append(row)
        for pid, (vectors, row) in current.items():
            ids.append(pid)
            kept.append(vectors)
            rows.append(row)
        return MatrixSnapshot._from_points(
            self.collection,
            ids,
            kept,
            rows,
            self.matrix.shape[1],
            ann_threshold=self.ann_threshold,
            nprobe=self.nprobe,
            answer_weight=self.answer_weight,
            previous=self,
        )

    def _point(self, row: int) -> PointVectors:
        return PointVectors(
            self.matrix[row],
            None if self.answers is None else self.answers[row],
            None if self.lexical is None else self.lexical[row],
        )

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
        fused = retrieval is not None and retrieval.fused and self.hybrid and len(self.rows) > 0
        if self._ann is not None:
            return [
                self._search_ann(query, spec, retrieval if fused else None)
                for query, spec in zip(queries, specs, strict=True)
            ]
        scores = _products(self.matrix, queries) if len(self.rows) else None
        answer_scores = (
            _products(self.answers, queries)
            if fused
            and retrieval is not None
            and retrieval.answer_weight > 0
            and self.answers is not None
            else None
        )
        out: list[list[Hit]] = []
        for i, spec in enumerate(specs):
            if scores is None or spec.top_k <= 0:
                out.append([])
                continue
            selection = self._selection(spec.lang, spec.market)
            if fused and retrieval is not None:
                found, row = self._fuse(i, spec, selection, scores, answer_scores, retrieval)
            else:
                found, row = _top(
                    scores[i] if selection is None else scores[i, selection], spec.top_k
                )
                if selection is not None:
                    found = selection[found]
            out.append([self.rows[r].hit(float(s)) for r, s in zip(found, row, strict=True)])
        return out

    def _fuse(
        self,
        i: int,
        spec: SearchSpec,
        selection: NDArray[np.intp] | None,
        scores: NDArray[np.float32],
        answer_scores: NDArray[np.float32] | None,
        retrieval: Retrieval,
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Rows and scores of one fused search, as Qdrant evaluates the formula query."""
        wq, wa, wl = retrieval.weights(bool(spec.lexical))
        fetch = retrieval.prefetch_limit(spec.top_k)
        n = len(self.rows) if selection is None else len(selection)
        total = np.zeros(n, dtype=np.float32)
        candidate = np.zeros(n, dtype=bool)
        parts: list[tuple[float, NDArray[np.float32], NDArray[np.bool_] | None]] = [
            (wq, scores[i], None)
        ]
        if answer_scores is not None and wa > 0:
            parts.append((wa, answer_scores[i], None))
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
        best, row = _top(total[pool], spec.top_k)
        found = pool[best]
        return (found if selection is None else selection[found]), row

    # --- the approximate path (above the row threshold) ---------------------------------------

    def _selector(self, lang: str | None, market: str | None) -> Selector | None:
        """The faiss selector of a filter (None = all rows), built once per snapshot and filter."""
        selection = self._selection(lang, market)
        if selection is None:
            return None
        key = (lang, market)
        found = self._selectors.get(key)
        if found is None:
            found = Selector(selection, len(self.rows))
            self._remember(self._selectors, key, found)
        return found

    def _search_ann(
        self, query: NDArray[np.float32], spec: SearchSpec, retrieval: Retrieval | None
    ) -> list[Hit]:
        """One search above the threshold: candidates from the IVF indexes, exact scores."""
        selection = self._selection(spec.lang, spec.market)
        if spec.top_k <= 0 or (selection is not None and len(selection) == 0):
            return []
        selector = self._selector(spec.lang, spec.market)
        assert self._ann is not None
        if retrieval is None:
            found, scores = self._dense(
                self._ann, _Score(query, self.matrix), spec.top_k, selection, selector
            )
        else:
            found, scores = self._fuse_ann(query, spec, selection, selector, retrieval)
        best, row = _top(scores, spec.top_k)
        return [self.rows[r].hit(float(s)) for r, s in zip(found[best], row, strict=True)]

    def _dense(
        self,
        ann: IvfIndex,
        score: _Score,
        k: int,
        selection: NDArray[np.intp] | None,
        selector: Selector | None,
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The (about) `k` best rows under the filter by `score` (whose vector `ann` indexes),
        ascending, and their exact scores. When the lists scanned hold fewer rows of the filter
        than wanted, the exact scan of the filter's rows."""
        wanted = min(k, len(self.rows) if selection is None else len(selection))
        found = np.sort(ann.search(score.query, wanted, self.nprobe, selector))
        if len(found) < wanted:
            found = np.arange(len(self.rows)) if selection is None else selection
        # Exact scores of the proposed rows (or of the filter's rows), and their best `wanted`.
        scores = score(found)
        best, _ = _top(scores, wanted)
        best.sort()
        return found[best], scores[best]

    def _fuse_ann(
        self,
        query: NDArray[np.float32],
        spec: SearchSpec,
        selection: NDArray[np.intp] | None,
        selector: Selector | None,
        retrieval: Retrieval,
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Candidate rows (ascending) and fused scores: the dense candidates of the weighted sum
        and the lexical prefetch, each scored on both dense parts, plus its lexical score when
        the lexical prefetch returned it.

        The dense candidates are the `top_k` best by the dense parts, not a prefetch of
        `prefetch_limit` rows: every candidate is scored on both dense parts here, so a dense
        candidate outside the lexical prefetch scores its dense part alone, and the `top_k`
        dense rows above it score at least as much; it cannot make the `top_k`. The rows that
        can (the dense `top_k`, and the lexical prefetch) are all kept, so the results are
        those of a dense prefetch of any size (at 100k rows fused p50 1.31 -> 1.13 ms, recall
        unchanged, `tools.matrix_latency`)."""
        wq, wa, wl = retrieval.weights(bool(spec.lexical))
        index, score = self._dense_parts(query, retrieval, wq, wa)
        pool, total = self._dense(index, score, spec.top_k, selection, selector)
        if wl > 0 and self._postings is not None:
            fetch = retrieval.prefetch_limit(spec.top_k)
            lexical_rows, lexical = self._postings.best(spec.lexical, fetch, selection)
            extra = lexical_rows[~_members(lexical_rows, pool)]
            if len(extra):
                pool = np.concatenate([pool, extra])
                total = np.concatenate([total, score(extra)])
                order = np.argsort(pool)
                pool, total = pool[order], total[order]
            total[np.searchsorted(pool, lexical_rows)] += np.float32(wl) * lexical
        return pool, total

    def _dense_parts(
        self, query: NDArray[np.float32], retrieval: Retrieval, wq: float, wa: float
    ) -> tuple[IvfIndex, _Score]:
        """The index that proposes a fused search's dense candidates, and their exact dense
        scores. With an answer part: the fused index (question + w x answer), and with the
        served answer weight the scores are wq x the inner product with its own rows (wq x q +
        wa x a), one row read instead of two; under load the rows of a search's ~700
        candidates come from memory, not the caches, and that read was its cost. Another
        weight reads the question and answer rows (the sums differ from the one product's in
        the last bits, ~1e-7). Without an answer part: the question index and rows."""
        assert self._ann is not None
        if wa <= 0 or self.answers is None:
            return self._ann, _Score(query, self.matrix, wq)
        if self._fused_ann is None or self._fused_rows is None:
            return self._ann, _Score(query, self.matrix, wq, self.answers, wa)
        if retrieval.answer_weight == self.answer_weight:
            return self._fused_ann, _Score(query, self._fused_rows, wq)
        return self._fused_ann, _Score(query, self.matrix, wq, self.answers, wa)


_warned_no_faiss = False


def _ann_available(rows: int) -> bool:
    """Whether faiss-cpu is installed; says once when a large snapshot scans without it."""
    global _warned_no_faiss
    if not ann.AVAILABLE and not _warned_no_faiss:
        _warned_no_faiss = True
        log.warning(
            "faiss-cpu is not installed: %d entries are searched by an exact scan "
            "(pip install faiss-cpu for the approximate search of large indexes)",
            rows,
        )
    return ann.AVAILABLE


def _ivf(
    matrix: NDArray[np.float32],
    previous: MatrixSnapshot | None,
    index_of: Any,
) -> IvfIndex:
    """The IVF index of `matrix`: the previous snapshot's centroids and codebooks when it has
    an index of the same width, else trained afresh."""
    if previous is not None:
        old: IvfIndex | None = index_of(previous)
        if old is not None and old.centroids.shape[1] == matrix.shape[1]:
            return old.reassigned(matrix)
    return IvfIndex.train(matrix)


def _weighted_sum(
    questions: NDArray[np.float32], answers: NDArray[np.float32], answer_weight: float
) -> NDArray[np.float32]:
    """The rows the fused index is built on: the dense formula's vector per entry (its scale,
    1 / (1 + w), changes no ranking and is left out)."""
    return np.ascontiguousarray(questions + np.float32(answer_weight) * answers)


@dataclass(frozen=True)
class _Score:
    """Exact dense scores of rows for one query: wq x question cosine (+ wa x answer cosine),
    weighted and summed in float32 in the order of the exact path (`MatrixSnapshot._fuse`);
    each cosine is a float32 inner product read in place (`ann.inner_products`)."""

    query: NDArray[np.float32]
    questions: NDArray[np.float32]
    question_weight: float = 1.0
    answers: NDArray[np.float32] | None = None
    answer_weight: float = 0.0

    def __call__(self, rows: NDArray[np.intp]) -> NDArray[np.float32]:
        total = np.float32(self.question_weight) * ann.inner_products(
            self.questions, self.query, rows
        )
        if self.answers is not None:
            answers = ann.inner_products(self.answers, self.query, rows)
            total = total + np.float32(self.answer_weight) * answers
        return np.asarray(total, dtype=np.float32)


def _products(matrix: NDArray[np.float32], queries: NDArray[np.float32]) -> NDArray[np.float32]:
    # A lone query: one matrix-vector product (BLAS gemv), one pass over the matrix.
    product = (matrix @ queries[0])[None, :] if len(queries) == 1 else queries @ matrix.T
    return np.asarray(product, dtype=np.float32)


def _members(values: NDArray[np.intp], sorted_pool: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Which of `values` are in `sorted_pool` (ascending): one binary search each, where
    `np.setdiff1d` sorts both arrays together again."""
    at = np.searchsorted(sorted_pool, values)
    inside = at < len(sorted_pool)
    inside[inside] = sorted_pool[at[inside]] == values[inside]
    return inside


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

    A long row (a lexical prefetch: 256 of 100k scores) is first cut to the positions at or
    above a threshold read from a strided sample: the `_SAMPLE_RANK`-th best of one score in
    every 2k / `_SAMPLE_RANK`, which about 2k scores of the row reach. The `k` best are all
    among them whenever at least `k` are; otherwise (rarely) the whole row is partitioned. A
    comparison pass over the row is several times cheaper than partitioning all of it."""
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


def _local_arrays(
    client: QdrantClient, collection: str, dim: int
) -> (
    tuple[
        list[str],
        list[dict[str, Any] | None],
        NDArray[np.float32],
        NDArray[np.float32] | None,
        list[Sparse] | None,
    ]
    | None
):
    """The live points of a local-mode collection read from its arrays (ids, payloads,
    question vectors, and answer vectors and lexical weights in a hybrid collection), or None
    when the client is not local mode or its internals are not the ones this was written
    against (qdrant-client 1.12-1.20: `LocalCollection.vectors/sparse_vectors/payload/ids_inv/
    deleted/deleted_per_vector`)."""
    try:
        local = getattr(client, "_client", None)
        stored = getattr(local, "collections", {}).get(collection)
        if stored is None:
            return None
        n = len(stored.ids_inv)
        hybrid = QUESTION in stored.vectors
        names = (QUESTION, ANSWER, LEXICAL) if hybrid else ("",)
        dead = np.asarray(stored.deleted[:n], dtype=bool)
        for name in names:
            dead = dead | np.asarray(stored.deleted_per_vector[name][:n], dtype=bool)
        payloads = stored.payload
        if len(payloads) != n or dead.shape != (n,):
            return None
        live = np.flatnonzero(~dead)
        dense = []
        for name in names[:2] if hybrid else names:
            vectors = np.asarray(stored.vectors[name])[:n]
            if vectors.shape != (n, dim):
                return None
            dense.append(np.asarray(vectors[live], dtype=np.float32))
        lexical: list[Sparse] | None = None
        if hybrid:
            sparse = stored.sparse_vectors[LEXICAL]
            lexical = [(list(sparse[i].indices), list(sparse[i].values)) for i in live]
        return (
            [str(stored.ids_inv[i]) for i in live],
            [payloads[i] for i in live],
            dense[0],
            dense[1] if hybrid else None,
            lexical,
        )
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return None


def _dim(client: QdrantClient, collection: str) -> int:
    vectors = client.get_collection(collection).config.params.vectors
    if isinstance(vectors, dict) and QUESTION in vectors:
        return int(vectors[QUESTION].size)
    size = getattr(vectors, "size", None)
    if size is None:
        raise ValueError(
            f"collection {collection!r} has neither one unnamed vector nor {QUESTION!r}"
        )
    return int(size)
