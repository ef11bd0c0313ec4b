"""The approximate path of the embedded search (above the row threshold): recall against the
exact scan of the same snapshot, exact scores, filters, edits, and the exact path below the
threshold. Random unit vectors grouped around random topics (as a model's vectors are), with
the threshold lowered so that 30,000 rows take the IVF path."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from index_builder.store import Hit, SearchSpec
from index_builder.store.fusion import Retrieval
from index_builder.store.matrix import ANN_THRESHOLD, MatrixSnapshot, PointVectors, _Row
from tests.index_builder.snapshots import hybrid_snapshot

N = 30_000
DIM = 64
TOPICS = 400
VOCAB = 3_000
LANGS = ["en", "es", "id", "th", "de", "pt"]  # one row in six each
RARE = "rare"  # a market of ~60 rows
FUSED = Retrieval(answer_weight=0.75, lexical_weight=0.003)


def _unit(x: NDArray[np.float64]) -> NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _tokens(rng: np.random.Generator, n: int) -> tuple[list[int], list[float]]:
    # Zipf-like token ids: a few tokens are in thousands of rows, most in a handful.
    ids = sorted({int(t) % VOCAB for t in rng.zipf(1.3, n)})
    return ids, [float(w) for w in rng.uniform(0.5, 2.0, len(ids))]


class Data:
    def __init__(self, n: int = N, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((TOPICS, DIM))
        topic = rng.integers(0, TOPICS, n)
        self.questions = _unit(centres[topic] + rng.standard_normal((n, DIM)) * 0.35)
        self.answers = _unit(centres[topic] + rng.standard_normal((n, DIM)) * 0.4)
        self.lexical = [_tokens(rng, 8) for _ in range(n)]
        markets = np.where(rng.random(n) < 0.002, RARE, "global")
        self.ids = [f"e-{i}" for i in range(n)]
        self.rows = [
            _Row(f"e-{i}", f"q{i}", f"a{i}", LANGS[i % len(LANGS)], str(markets[i]), (), "")
            for i in range(n)
        ]
        # Queries: paraphrases of stored questions (near one row, in its topic).
        near = rng.integers(0, n, 50)
        self.queries = _unit(self.questions[near] + rng.standard_normal((50, DIM)) * 0.3)
        self.query_tokens = [tuple(self.lexical[i][0][:3]) for i in near]

    def snapshot(self, threshold: int, answer_weight: float = 0.5) -> MatrixSnapshot:
        return MatrixSnapshot(
            "c",
            self.ids,
            self.questions,
            self.rows,
            answers=self.answers,
            lexical=self.lexical,
            ann_threshold=threshold,
            answer_weight=answer_weight,
        )


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def exact(data: Data) -> MatrixSnapshot:
    snapshot = data.snapshot(N)  # the threshold raised: the exact scan
    assert not snapshot.approximate
    return snapshot


@pytest.fixture(scope="module")
def approx(data: Data) -> MatrixSnapshot:
    snapshot = data.snapshot(1_000)
    assert snapshot.approximate
    return snapshot


def _specs(
    data: Data, k: int, lang: str | None = None, market: str | None = None
) -> list[SearchSpec]:
    return [SearchSpec(k, lang, market, tokens) for tokens in data.query_tokens]


def _assert_exact_best(got: list[list[Hit]], expected: list[list[Hit]]) -> None:
    """The exact path's hits, in its order, with its scores (within 1e-6: rescored in place)."""
    assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in expected]
    assert [[h.score for h in hits] for hits in got] == [
        pytest.approx([h.score for h in hits], abs=1e-6) for hits in expected
    ]


def _recall(got: list[list[Hit]], expected: list[list[Hit]]) -> float:
    found = [
        len({h.id for h in g} & {h.id for h in e}) / len(e)
        for g, e in zip(got, expected, strict=True)
    ]
    return float(np.mean(found))


@pytest.mark.parametrize("retrieval", [None, FUSED], ids=["question", "fused"])
@pytest.mark.parametrize("lang", [None, "es"])
def test_the_ann_path_finds_the_exact_best_rows(
    data: Data,
    exact: MatrixSnapshot,
    approx: MatrixSnapshot,
    retrieval: Retrieval | None,
    lang: str | None,
) -> None:
    specs = _specs(data, 10, lang)
    got = approx.search_batch(data.queries, specs, retrieval)
    expected = exact.search_batch(data.queries, specs, retrieval)
    assert all(len(h) == 10 for h in got)
    assert _recall(got, expected) >= 0.95
    # Most queries get exactly the exact path's ranking.
    same = sum([h.id for h in g] == [h.id for h in e] for g, e in zip(got, expected, strict=True))
    assert same >= 40


def test_scores_are_the_exact_dot_products(data: Data, approx: MatrixSnapshot) -> None:
    position = {pid: i for i, pid in enumerate(data.ids)}
    for query, hits in zip(
        data.queries, approx.search_batch(data.queries, _specs(data, 24)), strict=True
    ):
        rows = [position[h.id] for h in hits]
        assert [h.score for h in hits] == pytest.approx(
            (data.questions[rows] @ query).tolist(), abs=1e-6
        )
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_fused_scores_equal_the_exact_paths(
    data: Data, exact: MatrixSnapshot, approx: MatrixSnapshot
) -> None:
    # A row both paths return has the same fused score, unless one of the exact path's dense
    # prefetches missed it (Qdrant's evaluation gives that part 0): the approximate path scores
    # both dense parts of every candidate, so it can only be higher.
    specs = _specs(data, 24)
    got = approx.search_batch(data.queries, specs, FUSED)
    expected = exact.search_batch(data.queries, specs, FUSED)
    equal = total = 0
    for g, e in zip(got, expected, strict=True):
        reference = {h.id: h.score for h in e}
        for h in g:
            if h.id in reference:
                total += 1
                assert h.score >= reference[h.id] - 1e-6
                equal += abs(h.score - reference[h.id]) <= 1e-6
    assert total > 0.9 * 24 * len(specs) and equal >= 0.98 * total


def test_fused_candidates_come_from_questions_and_answers_together() -> None:
    # Answers unrelated to their questions, queries near stored answers: the best entries by
    # the fused formula are found by their answers, which an index over the questions alone
    # does not propose. The fused index is built on question + w x answer.
    rng = np.random.default_rng(1)
    n, dim = 25_000, DIM
    centres = rng.standard_normal((TOPICS, dim))
    questions = _unit(rng.standard_normal((n, dim)))
    answers = _unit(centres[rng.integers(0, TOPICS, n)] + rng.standard_normal((n, dim)) * 0.35)
    near = rng.integers(0, n, 30)
    queries = _unit(answers[near] + rng.standard_normal((30, dim)) * 0.3)
    weight = FUSED.answer_weight
    snapshot = hybrid_snapshot(
        questions, answers, [([], [])] * n, ann_threshold=1_000, answer_weight=weight
    )
    assert snapshot.approximate
    got = snapshot.search_batch(queries, [SearchSpec(10, None, None, ())] * 30, FUSED)
    full = questions @ queries.T + np.float32(weight) * (answers @ queries.T)
    best = np.argsort(-full, axis=0)[:10].T
    found = [
        len({f"e-{i}" for i in b} & {h.id for h in g}) / 10 for b, g in zip(best, got, strict=True)
    ]
    # Measured: 0.79 (random questions make the summed vectors noisy, a hard case for any
    # index); candidates from the question index alone: 0.32.
    assert float(np.mean(found)) >= 0.7


@pytest.mark.parametrize("retrieval", [None, FUSED], ids=["question", "fused"])
def test_filters_never_leak_and_a_selective_filter_gets_its_exact_best(
    data: Data, exact: MatrixSnapshot, approx: MatrixSnapshot, retrieval: Retrieval | None
) -> None:
    for lang, market in [("th", None), (None, RARE), ("de", RARE), ("xx", None)]:
        for k in (5, 500):
            specs = _specs(data, k, lang, market)
            got = approx.search_batch(data.queries, specs, retrieval)
            for hits in got:
                assert all(lang is None or h.lang == lang for h in hits)
                assert all(market is None or h.market == market for h in hits)
            if market == RARE:
                # ~60 rows (~10 with the language): every query gets their exact best.
                expected = exact.search_batch(data.queries, specs, retrieval)
                _assert_exact_best(got, expected)
    rare = sum(r.market == RARE for r in data.rows)
    assert 20 < rare < 120
    assert [
        len(h) for h in approx.search_batch(data.queries[:1], [SearchSpec(500, None, RARE)])
    ] == [rare]


def test_the_served_weight_scores_its_candidates_as_the_exact_formula_does(
    data: Data, exact: MatrixSnapshot
) -> None:
    # Built for FUSED's answer weight, the snapshot scores a fused search's candidates with
    # one inner product on question + w x answer (the other tests' snapshot is built for
    # another weight and reads both matrices): the same scores as the two products, and with
    # a selective filter the same exact best.
    served = data.snapshot(1_000, answer_weight=FUSED.answer_weight)
    assert served.approximate
    for lang in (None, "de"):
        specs = _specs(data, 5, lang, RARE)
        got = served.search_batch(data.queries, specs, FUSED)
        expected = exact.search_batch(data.queries, specs, FUSED)
        _assert_exact_best(got, expected)
    # Unfiltered and without tokens (no lexical part), every score is the dense formula's.
    w = FUSED.answer_weight
    specs = [SearchSpec(10, None, None, ())] * len(data.queries)
    got = served.search_batch(data.queries, specs, FUSED)
    for query, hits in zip(data.queries, got, strict=True):
        rows = [int(h.id.removeprefix("e-")) for h in hits]
        formula = (data.questions[rows] @ query + w * (data.answers[rows] @ query)) / (1 + w)
        assert [h.score for h in hits] == pytest.approx(formula.tolist(), abs=1e-6)


def test_at_or_below_the_threshold_the_search_is_the_exact_scan() -> None:
    data = Data(n=3_000, seed=1)
    below, exact = data.snapshot(3_000), data.snapshot(ANN_THRESHOLD)
    assert not below.approximate and data.snapshot(2_999).approximate
    for retrieval in (None, FUSED):
        for lang, market in [(None, None), ("es", None), (None, RARE)]:
            specs = _specs(data, 24, lang, market)
            got = below.search_batch(data.queries, specs, retrieval)
            expected = exact.search_batch(data.queries, specs, retrieval)
            assert got == expected


def test_an_edit_keeps_the_centroids_and_finds_the_new_rows(
    data: Data, approx: MatrixSnapshot
) -> None:
    assert approx._ann is not None
    moved = _unit(np.random.default_rng(5).standard_normal((2, DIM)))
    edited = approx.updated(
        upserts=[
            ("e-7", PointVectors(moved[0], moved[0], ([1], [1.0])), {"id": "e-7", "lang": "th"}),
            ("new", PointVectors(moved[1], moved[1], ([2], [1.0])), {"id": "new", "lang": "en"}),
        ],
        deletes=["e-8"],
    )
    assert edited.approximate and edited._ann is not None and edited._fused_ann is not None
    # Neither the centroids nor the product quantizer's codebooks are trained again.
    for before, after in [(approx._ann, edited._ann), (approx._fused_ann, edited._fused_ann)]:
        assert before is not None
        assert after.centroids is before.centroids and after.codebooks is before.codebooks
    assert len(edited) == N
    for vector, pid, lang in [(moved[0], "e-7", "th"), (moved[1], "new", "en")]:
        hits = edited.search_batch(vector[None, :], [SearchSpec(3, lang)], FUSED)[0]
        assert hits[0].id == pid
        assert edited.search_batch(vector[None, :], [SearchSpec(1)])[0][0].score == pytest.approx(
            1.0, abs=1e-6
        )
    everything = edited.search_batch(data.questions[8][None, :], [SearchSpec(50)])[0]
    assert "e-8" not in {h.id for h in everything}
    # Unchanged rows are still found as before.
    specs = _specs(data, 10)
    assert (
        _recall(edited.search_batch(data.queries, specs), approx.search_batch(data.queries, specs))
        >= 0.98
    )


def test_the_thread_cap_reaches_every_calling_thread(approx: MatrixSnapshot) -> None:
    # OpenMP's thread count is per thread: a search from a fresh thread must run capped too.
    import threading

    import faiss

    from index_builder.store import ann

    seen: list[int] = []

    def search() -> None:
        approx.search_batch(np.ones((1, approx.matrix.shape[1]), np.float32), [SearchSpec(5)])
        seen.append(faiss.omp_get_max_threads())

    ann.limit_threads(1)
    try:
        worker = threading.Thread(target=search)
        worker.start()
        worker.join()
    finally:
        ann.limit_threads(None)
    assert seen == [1]


def test_without_faiss_a_large_snapshot_scans_exactly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A lean install without faiss-cpu (a carried GPU environment) still serves large indexes.
    from index_builder.store import ann, matrix

    data = Data(n=3_000, seed=2)
    monkeypatch.setattr(ann, "AVAILABLE", False)
    monkeypatch.setattr(matrix, "_warned_no_faiss", False)
    with caplog.at_level("WARNING"):
        lean = data.snapshot(2_999)
    assert not lean.approximate and "faiss-cpu is not installed" in caplog.text
    specs = _specs(data, 24, "es", None)
    exact = data.snapshot(ANN_THRESHOLD)
    assert lean.search_batch(data.queries, specs, FUSED) == exact.search_batch(
        data.queries, specs, FUSED
    )


def test_inner_products_read_the_rows_in_place() -> None:
    from index_builder.store.ann import inner_products

    rng = np.random.default_rng(2)
    matrix = _unit(rng.normal(size=(500, DIM)))
    query = _unit(rng.normal(size=(1, DIM)))[0]
    rows = np.array([499, 0, 7, 7, 123], dtype=np.intp)
    assert inner_products(matrix, query, rows).tolist() == pytest.approx(
        (matrix[rows] @ query).tolist(), abs=1e-6
    )
    assert inner_products(matrix, query, rows[:0]).shape == (0,)
    with pytest.raises(IndexError, match=r"row ids outside 0\.\.499"):
        inner_products(matrix, query, np.array([3, 500]))
    with pytest.raises(IndexError):
        inner_products(matrix, query, np.array([-1]))
    with pytest.raises(ValueError, match="C-contiguous"):
        inner_products(np.asfortranarray(matrix), query, rows)
    with pytest.raises(ValueError, match="dimensions"):
        inner_products(matrix, query[:-1], rows)
