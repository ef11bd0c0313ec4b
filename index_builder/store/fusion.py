"""How a search combines the question vector, the answer vector and the lexical vector.

A collection holds three vectors per entry: `question` and `answer` (the model's passage
vectors of each text) and `lexical` (sparse, BM25 weights, Qdrant's IDF modifier:
`index_builder.lexical`). A search runs one prefetch per part and fuses them with a weighted
formula, where a part that did not return the entry among its `prefetch_limit` best counts 0:

    score = (cos_question + a * cos_answer + l * bm25) / (1 + a)

Dividing by 1 + answer_weight keeps the score on the cosine's scale, so a min_score still reads
like one (it is calibrated on this score: `faq-model calibrate`). Why a weighted sum and not
RRF, and how the weights were chosen: docs/design.md, "The score: question, answer and lexical".

This module is the one definition of the formula: `Retrieval.weights` gives its terms, the
Qdrant backend sends them as a formula query (`fused_query`), and the embedded search computes
the same sum in numpy (`MatrixSnapshot`), with the same prefetch limits; a test holds the two
to each other on the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from qdrant_client import models

QUESTION = "question"
ANSWER = "answer"
LEXICAL = "lexical"
# Every part fetches at least this many candidates, whatever the limit: one candidate set for
# every search the API asks for (grouping fetches at most `answers.FETCH_MAX` = 200), so the
# fused ranking does not depend on the limit (the top 3 are the first three of the top 10),
# and a FAQ of up to this many entries is scored with every part for every entry. With a
# prefetch that grew with the limit, a sample-FAQ entry outside the question-only top 100 lost
# its answer part at top_k 3 and kept it at top_k 10.
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
    parts: list[tuple[float, models.Prefetch]] = [
        (
            wq,
            models.Prefetch(
                query=vector, using=QUESTION, limit=fetch, filter=query_filter, params=params
            ),
        )
    ]
    if wa > 0:
        parts.append(
            (
                wa,
                models.Prefetch(
                    query=vector, using=ANSWER, limit=fetch, filter=query_filter, params=params
                ),
            )
        )
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
