"""Calibrate the abstain rule and measure "answers a shopper can use" (`faq-index calibrate`,
`faq-index evaluate-answers`).

Scores are the served ones: `FaqSearch` builds the FAQ into an in-memory collection with
the embedded store's rows (`Entries`) and searches them with its matrix search and the
fusion weights given (question, answer and lexical parts: `index_builder.store.fusion`), so the
figures do not depend on a running service and cannot drift from what it computes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index_builder.answers import (
    ENGLISH,
    Answer,
    Lookup,
    fetch_limit,
    group_by_topic,
    hit_topic,
)
from index_builder.calibration import (
    DEFAULT_REFUSAL_BUDGET,
    SHOPPER_DIR,
    AbstainRule,
    Calibration,
    CalibrationDataError,
    LabelledQuery,
    OffTopicQuery,
    Scores,
    Vectors,
    calibrate,
    load_labelled,
    nearest,
)
from index_builder.encoder import Encoder
from index_builder.faq import FaqItem, content_hash
from index_builder.lexical import Lexicon
from index_builder.manifest import AbstainCalibration
from index_builder.query_lang import QueryLanguageDetector
from index_builder.store import SearchSpec
from index_builder.store.embedded import Entries
from index_builder.store.fusion import Retrieval

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "data" / "examples.json"


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


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    query: str
    topic: str
    langs: tuple[str, ...]


def load_examples(path: Path = EXAMPLES) -> list[Example]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [Example(r["query"], r["topic"], tuple(r.get("langs") or ())) for r in rows]


def expected_lang(wanted: Sequence[str], available: set[str]) -> set[str]:
    """The languages an answer may be served in: any wanted one the topic has, else English."""
    hit = {lang for lang in wanted if lang in available}
    return hit or ({ENGLISH} if ENGLISH in available else available)


@dataclass
class GroupingFigures:
    queries: int = 0
    distinct3_on: int = 0
    distinct3_off: int = 0
    top1_on: int = 0
    top3_on: int = 0
    top3_off: int = 0
    lang_follows: int = 0
    lang_requested: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def pct(self, n: int) -> float:
        return 100.0 * n / max(1, self.queries)


def grouping_figures(
    faq: FaqSearch,
    queries: Sequence[str],
    topics: Sequence[str],
    wanted_langs: Sequence[Sequence[str]],
    detector: QueryLanguageDetector,
    *,
    top_k: int = 3,
    request_lang: str | None = "de",
) -> GroupingFigures:
    """Distinct topics in the top 3 with grouping on and off, topic recall, served language.

    Served language: the top answer's language is one the query is written in (its label) when
    the topic has it, else English. Requested: with `lang=request_lang` in the request, the top
    answer is in it when its topic has an entry in it.
    """
    vectors = faq.encoder.encode_queries(list(queries))
    limit = fetch_limit(top_k, group=True)
    hits = faq.search(queries, vectors, limit)
    figures = GroupingFigures(queries=len(queries))
    for i, (text, topic, wanted, row) in enumerate(
        zip(queries, topics, wanted_langs, hits, strict=True)
    ):
        detected = detector.detect(text)
        off = group_by_topic(row, top_k, group=False)
        # As the service does: an entry in the wanted language that was not fetched is looked
        # up in the index's snapshot.
        on: list[Answer[ScoredEntry]] = group_by_topic(
            row, top_k, detected=detected, lookup=faq.lookup(vectors[i])
        )
        figures.distinct3_on += len({a.topic for a in on}) == top_k
        figures.distinct3_off += len({a.topic for a in off}) == top_k
        figures.top1_on += bool(on) and on[0].topic == topic
        figures.top3_on += topic in {a.topic for a in on}
        figures.top3_off += topic in {a.topic for a in off}
        if on:
            first = on[0]
            figures.reasons[first.lang_reason] = figures.reasons.get(first.lang_reason, 0) + 1
            available = faq.topic_langs.get(first.topic, set())
            figures.lang_follows += first.hit.lang in expected_lang(wanted, available)
        if request_lang is not None:
            chosen = group_by_topic(
                row, top_k, requested=request_lang, detected=detected, lookup=faq.lookup(vectors[i])
            )
            if chosen:
                available = faq.topic_langs.get(chosen[0].topic, set())
                figures.lang_requested += chosen[0].hit.lang in expected_lang(
                    [request_lang], available
                )
    return figures


def detection_figures(
    detector: QueryLanguageDetector, rows: Sequence[LabelledQuery], faq_languages: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Per kind of query: (right, total) of the detected language. A query in a FAQ language
    should be detected as it (code-mixed: its matrix language, the label); one in another
    language as none (its answers fall back to English)."""
    out: dict[str, tuple[int, int]] = {}
    for q in rows:
        in_faq = q.lang in faq_languages
        key = q.kind if in_faq else "other language"
        expected = q.lang if in_faq else None
        right, total = out.get(key, (0, 0))
        out[key] = (right + (detector.detect(q.query) == expected), total + 1)
    return out


@dataclass(frozen=True)
class AbstainFigures:
    offtopic_test: int
    offtopic_abstained: float
    shopper_test: int
    shopper_refused: float
    by_kind: dict[str, tuple[int, int]]


def abstain_figures(
    faq: FaqSearch,
    rule: AbstainRule,
    offtopic: Sequence[OffTopicQuery],
    answerable: Sequence[LabelledQuery],
) -> AbstainFigures:
    def answered(texts: Sequence[str]) -> list[bool]:
        vectors = faq.encoder.encode_queries(list(texts))
        top = faq.top_scores(texts, vectors)
        return [rule.answered(float(t), v)[0] for t, v in zip(top, vectors, strict=True)]

    off = answered([q.query for q in offtopic])
    ans = answered([q.query for q in answerable])
    by_kind: dict[str, tuple[int, int]] = {}
    for q, a in zip(offtopic, off, strict=True):
        done, total = by_kind.get(q.kind, (0, 0))
        by_kind[q.kind] = (done + (not a), total + 1)
    return AbstainFigures(
        offtopic_test=len(off),
        offtopic_abstained=100.0 * (len(off) - sum(off)) / max(1, len(off)),
        shopper_test=len(ans),
        shopper_refused=100.0 * (len(ans) - sum(ans)) / max(1, len(ans)),
        by_kind=by_kind,
    )


@dataclass(frozen=True)
class QuerySet:
    """Labelled queries encoded once, for figures under several fusion weights."""

    queries: list[str]
    topics: list[str]
    vectors: Vectors

    @classmethod
    def encode(cls, encoder: Encoder, queries: Sequence[str], topics: Sequence[str]) -> QuerySet:
        return cls(list(queries), list(topics), encoder.encode_queries(list(queries)))


def retrieval_figures(faq: FaqSearch, queries: QuerySet, top_k: int = 3) -> tuple[float, float]:
    """% of queries whose topic is the first answer, and among the first `top_k` answers (one
    per topic, as the service groups them)."""
    rows = faq.search(queries.queries, queries.vectors, fetch_limit(top_k, group=True))
    first = within = 0
    for row, topic in zip(rows, queries.topics, strict=True):
        answers = [a.topic for a in group_by_topic(row, top_k)]
        first += bool(answers) and answers[0] == topic
        within += topic in answers
    n = max(1, len(queries.queries))
    return 100.0 * first / n, 100.0 * within / n


def shopper_split(split: str, shopper_dir: Path = SHOPPER_DIR) -> list[LabelledQuery]:
    return load_labelled(shopper_dir / f"{split}.jsonl")
