"""The large-index path of the embedded search (`MatrixSnapshot._search_large`, above
`large_rows` with the served answer weight): the dense parts scored as one inner product with
question + w x answer, their best rows proposed by the IVF index (`ivf.py`). Its best hits and
scores are those of the exact path with a dense prefetch of every row; filters hold; a search
wanting more rows than the lists scanned hold gets them all; below the threshold, or with
another answer weight, the exact path runs. Random unit vectors around random topics,
`large_rows` lowered to 1,000."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from index_builder.store import Hit, SearchSpec, ivf
from index_builder.store.base import Row
from index_builder.store.fusion import Retrieval
from index_builder.store.matrix import LARGE_ROWS, MatrixSnapshot, normalise

N = 3_000
DIM = 32
TOPICS = 60
VOCAB = 2_000
COMMON = (0, 1)  # tokens in about a third of the rows each (dense rows of the postings)
LANGS = ["en", "es", "id", "th", "de", "pt"]  # one row in six each
RARE = "rare"  # a market of ~30 rows
SERVED = Retrieval(answer_weight=0.75, lexical_weight=0.05)
LARGE = 1_000


def _unit(x: NDArray[np.float64]) -> NDArray[np.float32]:
    return normalise(x)


def _every_row(retrieval: Retrieval) -> Retrieval:
    """The same weights with a prefetch of every row: the exact path's dense parts uncut."""
    return Retrieval(retrieval.answer_weight, retrieval.lexical_weight, prefetch_min=N)


class Data:
    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((TOPICS, DIM))
        topic = rng.integers(0, TOPICS, N)
        self.questions = _unit(centres[topic] + rng.standard_normal((N, DIM)) * 0.5)
        self.answers = _unit(centres[topic] + rng.standard_normal((N, DIM)) * 0.6)
        self.lexical: list[tuple[list[int], list[float]]] = []
        for _ in range(N):
            tokens = {int(t) for t in rng.integers(len(COMMON), VOCAB, 6)}
            tokens |= {t for t in COMMON if rng.random() < 0.35}
            ids = sorted(tokens)
            self.lexical.append((ids, [float(w) for w in rng.uniform(0.5, 2.0, len(ids))]))
        markets = np.where(rng.random(N) < 0.01, RARE, "global")
        self.rows = [
            Row(f"e-{i}", f"q{i}", f"a{i}", LANGS[i % len(LANGS)], str(markets[i]), (), "")
            for i in range(N)
        ]
        # Queries: paraphrases of stored questions, with some of their rare tokens.
        near = rng.integers(0, N, 40)
        self.queries = _unit(self.questions[near] + rng.standard_normal((40, DIM)) * 0.4)
        self.rare_tokens = [
            tuple(t for t in self.lexical[i][0] if t not in COMMON)[:3] for i in near
        ]
        self.all_tokens = [(*COMMON, *t) for t in self.rare_tokens]

    def snapshot(
        self, large_rows: int, answer_weight: float = SERVED.answer_weight
    ) -> MatrixSnapshot:
        return MatrixSnapshot(
            "c",
            [r.id for r in self.rows],
            self.questions,
            self.rows,
            answers=self.answers,
            lexical=self.lexical,
            large_rows=large_rows,
            answer_weight=answer_weight,
        )


@pytest.fixture(autouse=True)
def _scan_a_few_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 of the ~219 lists of N rows, so the IVF proposal runs (the served 256 would scan every
    # list here, which is the exact pass).
    monkeypatch.setattr(ivf, "NPROBE", 16)


def test_scanning_every_list_is_the_exact_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    index = ivf.IvfIndex(np.eye(64, dtype=np.float32))
    monkeypatch.setattr(ivf, "NPROBE", index.nlist)
    assert index.search(np.eye(64, dtype=np.float32)[0], 5) is None
    monkeypatch.setattr(ivf, "NPROBE", 1)
    found = index.search(np.eye(64, dtype=np.float32)[0], 5)
    assert found is not None and 0 in found.tolist()


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def large(data: Data) -> MatrixSnapshot:
    snapshot = data.snapshot(LARGE)
    assert snapshot._uncut(SERVED)
    return snapshot


@pytest.fixture(scope="module")
def exact(data: Data) -> MatrixSnapshot:
    snapshot = data.snapshot(N)  # the threshold at its size: the exact path
    assert not snapshot._uncut(SERVED)
    return snapshot


def _specs(
    tokens: list[tuple[int, ...]], k: int, lang: str | None = None, market: str | None = None
) -> list[SearchSpec]:
    return [SearchSpec(k, lang, market, t) for t in tokens]


def _assert_same(got: list[list[Hit]], expected: list[list[Hit]]) -> None:
    assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in expected]
    for g, e in zip(got, expected, strict=True):
        assert [h.score for h in g] == pytest.approx([h.score for h in e], abs=1e-5)


FILTERS = [(None, None), ("es", None), (None, RARE), ("de", RARE), ("xx", None)]


@pytest.mark.parametrize(("lang", "market"), FILTERS)
# 16 lists propose the top 10 on this clustered data; a top 40 needs more of them, and with
# every list (the exact pass) any k is exact.
@pytest.mark.parametrize(("k", "nprobe"), [(10, 16), (40, 10**6)])
def test_the_large_path_finds_the_exact_best_hits(
    data: Data,
    large: MatrixSnapshot,
    exact: MatrixSnapshot,
    lang: str | None,
    market: str | None,
    k: int,
    nprobe: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ivf, "NPROBE", nprobe)
    # Rare tokens (a few rows each): the lexical prefetch holds every row sharing one, so the
    # served prefetch and one of every row agree on the lexical part.
    specs = _specs(data.rare_tokens, k, lang, market)
    got = large.search_batch(data.queries, specs, SERVED)
    expected = exact.search_batch(data.queries, specs, _every_row(SERVED))
    _assert_same(got, expected)
    assert all(hits for hits in got) == (lang != "xx")
    # Common tokens too, each prefetch of every row on both paths.
    specs = _specs(data.all_tokens, k, lang, market)
    every = _every_row(SERVED)
    big = data.snapshot(LARGE, answer_weight=every.answer_weight)
    assert big._uncut(every)
    _assert_same(
        big.search_batch(data.queries, specs, every),
        exact.search_batch(data.queries, specs, every),
    )


def test_the_lexical_part_changes_what_the_large_path_finds(
    data: Data, large: MatrixSnapshot
) -> None:
    specs = _specs(data.rare_tokens, 10)
    with_tokens = large.search_batch(data.queries, specs, SERVED)
    without = large.search_batch(data.queries, _specs([()] * len(specs), 10), SERVED)
    assert [[h.id for h in h1] for h1 in with_tokens] != [[h.id for h in h2] for h2 in without]


def test_scores_are_the_fused_formula(data: Data, large: MatrixSnapshot) -> None:
    # Without tokens (no lexical part) every score is the dense formula's.
    w = SERVED.answer_weight
    got = large.search_batch(data.queries, _specs([()] * len(data.queries), 24), SERVED)
    for query, hits in zip(data.queries, got, strict=True):
        rows = [int(h.id.removeprefix("e-")) for h in hits]
        formula = (data.questions[rows] @ query + w * (data.answers[rows] @ query)) / (1 + w)
        assert [h.score for h in hits] == pytest.approx(formula.tolist(), abs=1e-6)
        everything = (data.questions @ query + w * (data.answers @ query)) / (1 + w)
        assert hits[0].score == pytest.approx(float(everything.max()), abs=1e-6)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_filters_never_leak(data: Data, large: MatrixSnapshot) -> None:
    for lang, market in FILTERS:
        got = large.search_batch(data.queries, _specs(data.all_tokens, 500, lang, market), SERVED)
        for hits in got:
            assert all(lang is None or h.lang == lang for h in hits)
            assert all(market is None or h.market == market for h in hits)
    rare = sum(r.market == RARE for r in data.rows)
    assert 10 < rare < 80
    found = large.search_batch(data.queries[:1], [SearchSpec(500, None, RARE, ())], SERVED)
    assert [len(h) for h in found] == [rare]


def test_the_large_path_runs_only_above_large_rows_with_the_served_weight(
    data: Data, large: MatrixSnapshot, exact: MatrixSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LARGE_ROWS == 20_000
    assert data.snapshot(N - 1)._uncut(SERVED) and not data.snapshot(N)._uncut(SERVED)
    other = Retrieval(answer_weight=0.5, lexical_weight=SERVED.lexical_weight)
    assert not large._uncut(other)
    assert not data.snapshot(LARGE, answer_weight=0.0)._uncut(Retrieval(0.0, 0.05))

    def refuse(*args: object) -> None:
        raise AssertionError("the large path ran")

    specs = _specs(data.rare_tokens, 24, "es")
    monkeypatch.setattr(MatrixSnapshot, "_search_large", refuse)
    # Another weight, the question alone, or below the threshold: the exact path, row for row.
    for snapshot, retrieval in ((large, other), (large, None), (exact, SERVED)):
        assert snapshot.search_batch(data.queries, specs, retrieval) == exact.search_batch(
            data.queries, specs, retrieval
        )
    with pytest.raises(AssertionError, match="the large path ran"):
        large.search_batch(data.queries, specs, SERVED)


def test_a_search_wanting_more_rows_than_the_lists_scanned_hold_gets_them_all(
    data: Data, large: MatrixSnapshot
) -> None:
    # Half the rows: more than the lists an unfiltered query scans hold, so the rows come from
    # an exact pass; all of them, with the formula's scores, best first.
    k = N // 2
    w = SERVED.answer_weight
    queries = data.queries[:3]
    got = large.search_batch(queries, [SearchSpec(k, None, None, ())] * 3, SERVED)
    for query, hits in zip(queries, got, strict=True):
        formula = (data.questions @ query + w * (data.answers @ query)) / (1 + w)
        assert len(hits) == k
        assert [h.score for h in hits] == pytest.approx(np.sort(formula)[::-1][:k], abs=1e-6)
