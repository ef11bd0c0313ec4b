"""Ranking metrics with per-query values, bootstrap intervals and a paired test.

Every metric is first computed per query (binary relevance: the gold entry ids), so that
intervals and paired comparisons resample queries. `Recall@k` is the share of a query's gold
entries in its top k (with one gold entry: hit rate, the paper's "Recall@k"); `MRR@10` the
reciprocal rank of the first gold entry within the top 10, else 0; `nDCG@10` the DCG of the top
10 over the ideal DCG. Values are fractions in [0, 1]; reports multiply by 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RECALL_KS = (1, 5, 10, 30)
METRICS = ("R@1", "R@5", "R@10", "R@30", "MRR@10", "nDCG@10")


def per_query_metrics(
    rankings: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]
) -> dict[str, NDArray[np.float64]]:
    """Metric name -> array with one value per query."""
    if len(rankings) != len(golds):
        raise ValueError(f"{len(rankings)} rankings for {len(golds)} gold sets")
    out = {name: np.zeros(len(rankings), dtype=np.float64) for name in METRICS}
    for i, (ranked, gold_ids) in enumerate(zip(rankings, golds, strict=True)):
        gold = set(gold_ids)
        if not gold:
            raise ValueError(f"query {i} has no gold entry")
        if len(set(ranked)) != len(ranked):
            raise ValueError(f"query {i}: ranking lists an entry twice")
        hits = [r in gold for r in ranked]
        for k in RECALL_KS:
            out[f"R@{k}"][i] = sum(hits[:k]) / len(gold)
        first = next((rank for rank, hit in enumerate(hits[:10], 1) if hit), None)
        out["MRR@10"][i] = 1.0 / first if first else 0.0
        dcg = sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(hits[:10], 1) if hit)
        ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), 10) + 1))
        out["nDCG@10"][i] = dcg / ideal
    return out


def mean_metrics(per_query: Mapping[str, NDArray[np.float64]]) -> dict[str, float]:
    return {
        name: float(values.mean()) if values.size else float("nan")
        for name, values in per_query.items()
    }


def bootstrap_ci(
    values: NDArray[np.float64], *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling queries with replacement)."""
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedResult:
    """Model B minus model A on the same queries."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {
            "delta": self.delta,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "n": float(self.n),
        }


def paired_test(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    *,
    n_boot: int = 1000,
    n_perm: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedResult:
    """Mean difference b - a with a paired bootstrap interval and a sign-flip permutation p-value.

    The permutation test flips the sign of each query's difference at random (under the null
    the two models are exchangeable per query) and counts how often the absolute mean is at
    least the observed one; the +1 correction keeps p > 0.
    """
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        nan = float("nan")
        return PairedResult(nan, nan, nan, nan, 0)
    diff = b - a
    observed = float(diff.mean())
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, diff.size))
    perm_means = np.abs((signs * diff).mean(axis=1))
    p = (1 + int(np.sum(perm_means >= abs(observed) - 1e-12))) / (n_perm + 1)
    return PairedResult(observed, lo, hi, float(p), int(diff.size))


def rank_by_similarity(
    query_vectors: NDArray[np.float32],
    entry_vectors: NDArray[np.float32],
    entry_ids: Sequence[str],
    *,
    k: int = 30,
) -> list[list[str]]:
    """Top-k entry ids per query by dot product (vectors are L2-normalised: cosine)."""
    if query_vectors.shape[0] == 0:
        return []
    scores = query_vectors @ entry_vectors.T
    k = min(k, scores.shape[1])
    # argpartition then a stable sort of the k best: ties resolve to the lower entry index.
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    out: list[list[str]] = []
    for row, cand in zip(scores, top, strict=True):
        order = cand[np.lexsort((cand, -row[cand]))]
        out.append([entry_ids[j] for j in order])
    return out
