"""Calibrated abstain: when the best answer is too weak to show, say so instead.

A raw cosine threshold does not separate shop questions from greetings or gibberish; whether a
query is nearer the FAQ than off-topic texts does. So the answer score is

    answer_score = top hit score - offtopic_weight * max_j cos(query, anchor_j)

with the anchors (off-topic texts encoded as passages), the weight and `min_score` calibrated
offline (`faq-model calibrate`) and stored per variant in the model's manifest; a reindex picks
the threshold again for its FAQ (`index_builder.indexing.faq_calibration`). Stdlib and numpy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index_builder.model.manifest import AbstainCalibration

Vectors = NDArray[np.float32]
Scores = NDArray[np.float64]

DEFAULT_REFUSAL_BUDGET = 0.02


class CalibrationDataError(ValueError):
    """A dev or test file that cannot be used; `str()` names the file and the problem."""


def threshold_for(scores: Scores, budget: float) -> float:
    """The highest threshold under which at most `budget` of `scores` fall (strictly below)."""
    if scores.size == 0:
        raise CalibrationDataError("no answerable queries to calibrate on")
    ordered = np.sort(scores)
    allowed = math.floor(budget * ordered.size + 1e-9)
    return float(ordered[min(allowed, ordered.size - 1)])


def threshold_abstaining(scores: Scores, target: float) -> float:
    """The lowest threshold under which at least `target` of `scores` fall (strictly below)."""
    if scores.size == 0:
        raise CalibrationDataError("no off-topic queries to calibrate on")
    ordered = np.sort(scores)
    needed = min(math.ceil(target * ordered.size - 1e-9), ordered.size)
    if needed <= 0:
        return float(ordered[0])
    # Just above the needed-th lowest: every score up to it (ties included) falls below.
    return float(np.nextafter(ordered[needed - 1], np.inf))


def nearest(
    queries: NDArray[np.floating[Any]],
    vectors: NDArray[np.floating[Any]],
    *,
    exclude_self: bool = False,
) -> Scores:
    """Per query row, the highest cosine to a row of `vectors` (rows L2-normalised); -1 where
    `vectors` is empty. `exclude_self` skips the diagonal (queries scored against themselves)."""
    if vectors.shape[0] == 0 or queries.shape[0] == 0:
        return np.full(queries.shape[0], -1.0)
    # asarray: no copy of rows that are float64 already (the served rule's anchors).
    sims = np.asarray(queries, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
        if sims.shape[1] == 1:
            return np.full(queries.shape[0], -1.0)
    return np.asarray(sims.max(axis=1), dtype=np.float64)


class AbstainRule:
    """The served rule: `answer_score` of a query, and whether it clears a threshold."""

    def __init__(
        self, min_score: float | None, offtopic_weight: float = 0.0, anchors: Vectors | None = None
    ) -> None:
        self.min_score = min_score
        self.offtopic_weight = offtopic_weight
        # float64 once here, as `nearest` computes: not a conversion of every anchor per query.
        self.anchors: Scores = np.asarray(
            anchors if anchors is not None else np.zeros((0, 1)), dtype=np.float64
        )

    @classmethod
    def from_calibration(cls, calibration: AbstainCalibration, anchors: Vectors) -> AbstainRule:
        return cls(calibration.min_score, calibration.offtopic_weight, anchors)

    def answer_score(self, top_score: float, query_vector: Vectors) -> float:
        """The top hit's score, lowered by the query's closeness to the off-topic anchors."""
        if self.offtopic_weight == 0.0 or self.anchors.shape[0] == 0:
            return top_score
        background = float(nearest(query_vector.reshape(1, -1), self.anchors)[0])
        return top_score - self.offtopic_weight * background

    def answered(
        self, top_score: float | None, query_vector: Vectors, min_score: float | None = None
    ) -> tuple[bool, float | None]:
        """(answered, answer score); `min_score` overrides the rule's own threshold. No hit is
        never an answer; no threshold at all always is one."""
        if top_score is None:
            return False, None
        score = self.answer_score(top_score, query_vector)
        threshold = self.min_score if min_score is None else min_score
        return (threshold is None or score >= threshold), score
