"""How a search combines an entry's `question`, `answer` (dense) and `lexical` (BM25) vectors:
one prefetch per part, a part that did not return the entry among its `prefetch_limit` best
counting 0, fused by

    score = (cos_question + a * cos_answer + l * bm25) / (1 + a)

which keeps the score on the cosine's scale (min_score is calibrated on it). The one definition
of the formula: Qdrant gets it as a formula query (`fused_query`), the embedded search computes
the same sum (`MatrixSnapshot`); a test holds the two to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from qdrant_client import models

QUESTION = "question"
ANSWER = "answer"
LEXICAL = "lexical"
# Every part fetches at least this many candidates, more than any search asks for
# (`answers.FETCH_MAX`), so the fused ranking does not depend on the limit (the top 3 are the
# first three of the top 10), and a FAQ of up to this many entries is scored with every part.
PREFETCH_MIN = 256


@dataclass(frozen=True)
class Retrieval:
    """The fusion weights (0 switches a part off) and what each prefetch returns."""

    answer_weight: float = 0.5
    lexical_weight: float = 0.001
    prefetch_min: int = PREFETCH_MIN

    def __post_init__(self) -> None:
        if self.answer_weight < 0 or self.lexical_weight < 0:
            raise ValueError("fusion weights must be >= 0")

    @property
    def fused(self) -> bool:
        return self.answer_weight > 0 or self.lexical_weight > 0

    def weights(self, lexical: bool) -> tuple[float, float, float]:
        """(question, answer, lexical) multipliers of the formula; lexical 0 without tokens."""
        total = 1.0 + self.answer_weight
        return (
            1.0 / total,
            self.answer_weight / total,
            (self.lexical_weight if lexical else 0.0) / total,
        )

    def prefetch_limit(self, limit: int) -> int:
        return max(limit, self.prefetch_min)

    def describe(self) -> str:
        """What a calibrated threshold depends on: the weights, and the prefetch size when
        parts are fused (an entry outside a part's prefetch scores 0 in it)."""
        weights = f"answer_weight={self.answer_weight:g} lexical_weight={self.lexical_weight:g}"
        return f"{weights} prefetch={self.prefetch_min}" if self.fused else weights


# Every part but the question's switched off: the question vectors alone.
DENSE_ONLY = Retrieval(answer_weight=0.0, lexical_weight=0.0)


def fused_query(
    vector: list[float],
    lexical: tuple[int, ...],
    limit: int,
    query_filter: models.Filter | None,
    retrieval: Retrieval,
    params: models.SearchParams | None = None,
) -> tuple[list[models.Prefetch], models.FormulaQuery]:
    """The prefetches (each searched with `params`) and the formula for Qdrant's query API."""
    wq, wa, wl = retrieval.weights(bool(lexical))
    fetch = retrieval.prefetch_limit(limit)
    dense = partial(models.Prefetch, query=vector, limit=fetch, filter=query_filter, params=params)
    parts: list[tuple[float, models.Prefetch]] = [(wq, dense(using=QUESTION))]
    if wa > 0:
        parts.append((wa, dense(using=ANSWER)))
    if wl > 0:
        sparse = models.SparseVector(indices=list(lexical), values=[1.0] * len(lexical))
        parts.append(
            (wl, models.Prefetch(query=sparse, using=LEXICAL, limit=fetch, filter=query_filter))
        )
    terms: list[models.Expression] = [
        models.MultExpression(mult=[weight, f"$score[{i}]"]) for i, (weight, _) in enumerate(parts)
    ]
    formula = models.FormulaQuery(
        formula=models.SumExpression(sum=terms),
        defaults={f"$score[{i}]": 0.0 for i in range(len(parts))},
    )
    return [p for _, p in parts], formula
