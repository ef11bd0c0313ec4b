"""The served search over a FAQ in memory, and the abstain rule calibrated on it
(`faq-index calibrate`; `faq-model evaluate-answers` measures with it).

Scores are the served ones: `FaqSearch` builds the FAQ into an in-memory collection with
the embedded store's rows (`Entries`) and searches them with its matrix search and the
fusion weights given (question, answer and lexical parts: `index_builder.store.fusion`), so the
figures do not depend on a running service and cannot drift from what it computes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from index_builder.answers import Lookup, hit_topic
from index_builder.calibration import (
    DEFAULT_REFUSAL_BUDGET,
    AbstainRule,
    Calibration,
    CalibrationDataError,
    LabelledQuery,
    OffTopicQuery,
    Scores,
    Vectors,
    calibrate,
    nearest,
)
from index_builder.encoder import Encoder
from index_builder.faq import FaqItem, content_hash
from index_builder.lexical import Lexicon
from index_builder.manifest import AbstainCalibration
from index_builder.store import SearchSpec
from index_builder.store.embedded import Entries
from index_builder.store.fusion import Retrieval


@dataclass(frozen=True)
class ScoredEntry:
    """A hit as the index returns it, enough for grouping."""

    id: str
    lang: str
    topic: str
    score: float


class FaqSearch:
    """The FAQ indexed and searched as the service does it: an in-memory collection built by
    the embedded store's way (question and answer vectors, lexical weights) and searched through
    its matrix with the served fusion weights (`retrieval`), so every figure and the calibrated
    threshold read the served score."""

    def __init__(
        self, items: Sequence[FaqItem], encoder: Encoder, retrieval: Retrieval | None = None
    ) -> None:
        self.items = list(items)
        self.encoder = encoder
        self.retrieval = retrieval or Retrieval()
        self.lexicon = Lexicon.for_encoder(encoder)
        sparse, _ = self.lexicon.documents([i.lexical_text for i in self.items])
        # The rows of a version of the embedded store, in memory: the served search, no files.
        self.snapshot = Entries.encode(self.items, encoder, sparse).snapshot("eval", self.retrieval)
        self.languages = sorted({i.lang for i in self.items})
        self.topic_langs: dict[str, set[str]] = {}
        for i in self.items:
            self.topic_langs.setdefault(i.topic, set()).add(i.lang)

    def with_retrieval(self, retrieval: Retrieval) -> FaqSearch:
        """The same built index searched with other fusion weights (no second build)."""
        other = copy.copy(self)
        other.retrieval = retrieval
        return other

    def search(
        self, texts: Sequence[str], queries: Vectors, limit: int, lang: str | None = None
    ) -> list[list[ScoredEntry]]:
        """The best `limit` entries per query (only entries in `lang` when given)."""
        specs = [SearchSpec(limit, lang, None, tokens) for tokens in self.lexicon.queries(texts)]
        return [
            [ScoredEntry(h.id, h.lang, hit_topic(h), h.score) for h in row]
            for row in self.snapshot.search_batch(queries, specs, self.retrieval)
        ]

    def lookup(self, vector: Vectors) -> Lookup[ScoredEntry]:
        """A topic's entry in a language for one query, as the service finds one that was not
        fetched (`MatrixSnapshot.entry_in`)."""

        def find(topic: str, lang: str) -> ScoredEntry | None:
            hit = self.snapshot.entry_in(vector, topic, lang)
            return None if hit is None else ScoredEntry(hit.id, hit.lang, hit_topic(hit), hit.score)

        return find

    def top_scores(self, texts: Sequence[str], queries: Vectors) -> Scores:
        """Each query's best score: what the abstain rule reads."""
        rows = self.search(texts, queries, 1)
        return np.array([row[0].score if row else 0.0 for row in rows], dtype=np.float64)


# --- calibration --------------------------------------------------------------------------------


def calibrate_model(
    faq: FaqSearch,
    answerable: Sequence[LabelledQuery],
    offtopic: Sequence[OffTopicQuery],
    *,
    refusal_budget: float = DEFAULT_REFUSAL_BUDGET,
    variant: str = "fp32",
) -> tuple[Calibration, AbstainCalibration]:
    """Calibrate on dev data; the anchors are the off-topic dev queries themselves."""
    if not answerable or not offtopic:
        raise CalibrationDataError("calibration needs answerable and off-topic dev queries")
    encoder = faq.encoder
    anchors = [q.query for q in offtopic]
    anchor_vectors = encoder.encode_passages(anchors)
    ans_q = encoder.encode_queries([q.query for q in answerable])
    off_q = encoder.encode_queries(anchors)
    result = calibrate(
        faq.top_scores([q.query for q in answerable], ans_q),
        nearest(ans_q, anchor_vectors),
        faq.top_scores(anchors, off_q),
        # Each off-topic query against the others: its own passage would flatter the rule.
        nearest(off_q, anchor_vectors, exclude_self=True),
        refusal_budget=refusal_budget,
    )
    stored = AbstainCalibration(
        min_score=round(result.min_score, 6),
        offtopic_weight=result.offtopic_weight,
        anchors=anchors if result.offtopic_weight > 0 else [],
        refusal_budget=refusal_budget,
        answerable=len(answerable),
        offtopic=len(offtopic),
        dev_refused=round(result.refused, 6),
        dev_abstained=round(result.abstained, 6),
        faq_hash=content_hash(faq.items),
        variant=variant,
        retrieval=faq.retrieval.describe(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return result, stored


def rule_for(faq: FaqSearch, calibration: AbstainCalibration) -> AbstainRule:
    anchors = (
        faq.encoder.encode_passages(calibration.anchors)
        if calibration.anchors
        else np.zeros((0, faq.encoder.dim), dtype=np.float32)
    )
    return AbstainRule.from_calibration(calibration, anchors)
