"""The recall tools' reference (`tools.matrix_latency.whole_formula`) and score rule."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from index_builder.store import Hit, SearchSpec
from index_builder.store.fusion import Retrieval
from tests.index_builder.snapshots import hybrid_snapshot
from tools.ann_recall import _within
from tools.matrix_latency import recall, whole_formula


def _unit(x: NDArray[np.float64]) -> NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _hit(i: int, score: float) -> Hit:
    return Hit(f"e-{i}", "q", "a", "en", None, [], score)


def test_the_reference_is_the_ivf_path_proposing_every_row() -> None:
    # 500 rows, every list scanned and at least 512 rows proposed: the IVF path scores every
    # row on both dense parts, and the lexical part as its prefetch (256 rows) gives it, which
    # is what the reference computes with lexical_prefetch. Tokens from a small vocabulary,
    # so more rows share a token with a query than the lexical prefetch keeps.
    rng = np.random.default_rng(4)
    n, dim = 500, 16
    questions, answers = _unit(rng.normal(size=(n, dim))), _unit(rng.normal(size=(n, dim)))
    lexical = [
        (sorted(rng.choice(12, 3, replace=False).tolist()), [1.0, 0.5, 2.0]) for _ in range(n)
    ]
    snapshot = hybrid_snapshot(questions, answers, lexical, ann_threshold=100, nprobe=10_000)
    assert snapshot.approximate
    fusion = Retrieval(answer_weight=0.5, lexical_weight=0.3)
    queries = _unit(rng.normal(size=(20, dim)))
    specs = [SearchSpec(40, None, None, (1, 2, 3, 5, 8)) for _ in queries]
    got = [
        snapshot.search_batch(q[None, :], [s], fusion)[0]
        for q, s in zip(queries, specs, strict=True)
    ]
    reference = whole_formula(snapshot, queries, specs, fusion, lexical_prefetch=True)
    assert [[h.id for h in g] for g in got] == [[h.id for h in r] for r in reference]
    for g, r in zip(got, reference, strict=True):
        assert [h.score for h in g] == pytest.approx([h.score for h in r], abs=1e-5)
    # Without the prefetch rule the lexical part reaches rows the served search never credits.
    uncut = whole_formula(snapshot, queries, specs, fusion)
    assert recall(got, uncut) < 1.0


def test_a_hit_counts_by_score_when_it_reaches_the_kth_best_less_eps() -> None:
    expected = [[_hit(1, 0.9), _hit(2, 0.8)]]
    assert _within([[_hit(7, 0.95), _hit(8, 0.7995)]], expected, 1e-3) == 1.0
    assert _within([[_hit(7, 0.95), _hit(8, 0.798)]], expected, 1e-3) == 0.5
    assert recall([[_hit(7, 0.95), _hit(1, 0.9)]], expected) == 0.5
