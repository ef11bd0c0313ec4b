"""Metrics on rankings small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_export.evaluation.metrics import (
    bootstrap_ci,
    mean_metrics,
    paired_test,
    per_query_metrics,
    rank_by_similarity,
)


def test_single_gold_rankings_by_hand() -> None:
    rankings = [["a", "b", "c"], ["x", "a", "y"], ["q", "r", "s"]]
    golds = [["a"], ["a"], ["a"]]
    m = mean_metrics(per_query_metrics(rankings, golds))
    # first query: rank 1; second: rank 2; third: not found
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["R@5"] == pytest.approx(2 / 3)
    assert m["R@30"] == pytest.approx(2 / 3)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert m["nDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)


def test_two_gold_entries_by_hand() -> None:
    pq = per_query_metrics([["a", "x", "b"]], [["a", "b"]])
    assert pq["R@1"][0] == pytest.approx(0.5)
    assert pq["R@5"][0] == pytest.approx(1.0)
    assert pq["MRR@10"][0] == pytest.approx(1.0)
    ideal = 1 + 1 / math.log2(3)
    assert pq["nDCG@10"][0] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_cutoffs_at_ten_and_thirty() -> None:
    ranking = [f"e{i}" for i in range(40)]
    at_11 = per_query_metrics([ranking], [["e10"]])  # rank 11
    assert at_11["R@10"][0] == 0.0 and at_11["MRR@10"][0] == 0.0 and at_11["nDCG@10"][0] == 0.0
    assert at_11["R@30"][0] == 1.0
    at_31 = per_query_metrics([ranking], [["e30"]])
    assert at_31["R@30"][0] == 0.0


@pytest.mark.parametrize(
    ("rankings", "golds"),
    [([["a"]], [["a"], ["b"]]), ([["a", "a"]], [["a"]]), ([["a"]], [[]])],
)
def test_malformed_input_is_refused(rankings: list[list[str]], golds: list[list[str]]) -> None:
    with pytest.raises(ValueError):
        per_query_metrics(rankings, golds)


def test_bootstrap_interval() -> None:
    const = np.full(50, 0.7)
    assert bootstrap_ci(const) == pytest.approx((0.7, 0.7))
    values = np.array([1.0] * 30 + [0.0] * 70)
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=1)
    assert lo < 0.3 < hi
    assert lo > 0.18 and hi < 0.42  # about +-1.96 * sqrt(.21/100) = +-0.09
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    wide = bootstrap_ci(np.array([1.0] * 3 + [0.0] * 7), n_boot=2000, seed=1)
    assert wide[1] - wide[0] > hi - lo


def test_paired_test_identical_models() -> None:
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    res = paired_test(a, a.copy())
    assert res.delta == 0.0 and res.p_value == pytest.approx(1.0)
    assert (res.ci_low, res.ci_high) == (0.0, 0.0)


def test_paired_test_detects_a_consistent_gain_and_is_antisymmetric() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(200) < 0.5).astype(float)
    b = a.copy()
    flip = np.flatnonzero(a == 0)[:30]  # b wins on 30 queries, loses on none
    b[flip] = 1.0
    res = paired_test(a, b, seed=2)
    assert res.delta == pytest.approx(30 / 200)
    assert res.p_value < 0.01
    assert 0 < res.ci_low < res.delta < res.ci_high
    back = paired_test(b, a, seed=2)
    assert back.delta == pytest.approx(-res.delta)
    assert back.p_value == pytest.approx(res.p_value)


def test_paired_test_noise_is_not_significant() -> None:
    a = np.array([1.0, 0.0] * 50)
    b = np.array([0.0, 1.0] * 50)  # same mean, opposite queries
    res = paired_test(a, b)
    assert res.delta == 0.0 and res.p_value > 0.5
    assert res.ci_low < 0 < res.ci_high


def test_rank_by_similarity() -> None:
    entries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    ranked = rank_by_similarity(queries, entries, ["a", "b", "c", "d"], k=10)
    # ties (a and c are the same vector) go to the lower index; k is clipped to the entries
    assert ranked == [["a", "c", "d", "b"], ["b", "d", "a", "c"]]
    assert rank_by_similarity(queries, entries, ["a", "b", "c", "d"], k=1) == [["a"], ["b"]]
