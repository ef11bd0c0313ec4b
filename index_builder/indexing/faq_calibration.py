"""The abstain threshold picked again for each FAQ a reindex builds, without labelled queries.

A threshold depends on the FAQ, and an owner's FAQ comes without labelled questions, so a build
scores the new collection with the served encoder and rule (`index_builder.answers.calibration`) on
positives (the FAQ's questions as a shopper might type them) and negatives (the model's
off-topic anchors, each against the others). The anchors place the threshold, the positives only
cap it: they sit nearer their question than shoppers' own wording. The anchors' weight stays the
model's, and a model calibrated on labelled questions of this very FAQ keeps its threshold.
docs/your-faq.md describes the method.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from index_builder.answers.calibration import (
    Scores,
    Vectors,
    nearest,
    threshold_abstaining,
    threshold_for,
)
from index_builder.faq import FaqItem, content_hash
from index_builder.model.manifest import AbstainCalibration
from index_builder.store.base import Annotate, SearchSpec, Store
from index_builder.store.lexical import Lexicon

if TYPE_CHECKING:
    from index_builder.model.encoder import Encoder

log = logging.getLogger(__name__)

META_KEY = "abstain"
METHOD = "reindex"
# Share of the off-topic anchors a picked threshold abstains on, unless that refuses more than
# the model's refusal budget of the FAQ's own question variants (docs/your-faq.md).
DEFAULT_OFFTOPIC_TARGET = 0.90
# A large FAQ's variants are sampled down (stably): a reindex encodes a bounded number of queries.
MAX_POSITIVES = 2000
_WORD = re.compile(r"\w+")
_SALT = "faq-calibration-v1"

# The top fused score of each text (with its query vector) in the collection being built.
TopScores = Callable[[Sequence[str], Vectors], Scores]


class CollectionCalibration(BaseModel):
    """The threshold picked for one collection's FAQ, and how: its metadata's `abstain`."""

    min_score: float
    offtopic_weight: float = Field(ge=0.0, description="The model's weight, not re-chosen.")
    method: str = Field(METHOD, description="How it was chosen (the module's docstring).")
    chosen_by: Literal["offtopic_target", "refusal_budget", "labelled"] = Field(
        description="offtopic_target: the lowest threshold abstaining on that share of the "
        "anchors; refusal_budget: that one refused more positives, so the budget's; "
        "labelled: the model's, calibrated on labelled questions of this same FAQ."
    )
    offtopic_target: float = Field(ge=0.0, le=1.0)
    refusal_budget: float = Field(ge=0.0, le=1.0)
    positives: int = Field(ge=0, description="The FAQ's questions and their variants scored.")
    offtopic: int = Field(ge=0, description="Off-topic anchors scored.")
    positives_refused: float = Field(description="Share of positives below min_score.")
    offtopic_abstained: float = Field(description="Share of anchors below min_score.")
    target_threshold: float = Field(description="The off-topic target's threshold.")
    budget_threshold: float = Field(description="The refusal budget's threshold.")
    model_min_score: float = Field(description="The model's calibrated threshold, beside it.")
    anchors_hash: str = Field(description="Of the anchors scored: the served rule's own?")
    retrieval: str = Field(description="The fusion weights of the scores (`Retrieval`).")
    created_at: str = ""

    def describe(self) -> str:
        """One line for a log or a terminal."""
        how = {
            "offtopic_target": f"abstains on {self.offtopic_target:.0%} of the off-topic anchors",
            "refusal_budget": f"refuses at most {self.refusal_budget:.0%} of its question variants",
            "labelled": "the model's, calibrated on labelled questions of this FAQ",
        }[self.chosen_by]
        return (
            f"abstain below {self.min_score:.4f} (the model's: {self.model_min_score:.4f}; "
            f"{how}): {100 * self.offtopic_abstained:.1f}% of {self.offtopic} off-topic "
            f"anchors abstained, {100 * self.positives_refused:.1f}% of {self.positives} "
            "variants of its questions refused"
        )

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> CollectionCalibration | None:
        """The record in a collection's metadata; None when there is none or it cannot be read
        (a newer or hand-edited record: the model's threshold serves)."""
        if not meta:
            return None
        try:
            return cls.model_validate(meta)
        except ValidationError as exc:
            log.warning("the collection's abstain record cannot be read, ignored: %s", exc)
            return None


def anchors_hash(anchors: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(anchors).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Positive:
    text: str
    topic: str


def _rng(text: str, salt: str) -> random.Random:
    # Seeded by the text: the same FAQ gives the same variants, whatever its order.
    return random.Random(hashlib.sha256(f"{_SALT}\x1f{salt}\x1f{text}".encode()).digest())


def _dropped(words: list[str], seed: str) -> str | None:
    if len(words) < 3:
        return None
    i = _rng(seed, "drop").randrange(len(words))
    return " ".join(words[:i] + words[i + 1 :])


def _typo(words: list[str], seed: str) -> str | None:
    rng = _rng(seed, "typo")
    long = [i for i, w in enumerate(words) if len(w) > 3]
    if not long:
        return None
    i = rng.choice(long)
    w = words[i]
    j = rng.randrange(len(w) - 1)
    # Two neighbouring letters swapped: the commonest typing slip.
    return " ".join([*words[:i], w[:j] + w[j + 1] + w[j] + w[j + 2 :], *words[i + 1 :]])


def _forms(question: str) -> Iterator[str | None]:
    """What a shopper might type for one question, without a model."""
    words = _WORD.findall(question.casefold())
    yield question
    yield " ".join(words)
    yield _dropped(words, question)
    keywords = [w for w in words if len(w) > 3]
    yield " ".join(keywords) if 0 < len(keywords) < len(words) else None
    yield _typo(words, question)
    if len(words) >= 4:
        yield " ".join(words[: len(words) // 2 + 1])
        yield " ".join(words[len(words) // 2 :])


def _code_switched(item: FaqItem, translations: Sequence[FaqItem]) -> Iterator[str]:
    """This question's first half and each translation's second half."""
    head = _WORD.findall(item.question.casefold())
    for other in translations:
        tail = _WORD.findall(other.question.casefold())
        if other.lang != item.lang and len(head) >= 2 and len(tail) >= 2:
            yield " ".join(head[: len(head) // 2] + tail[len(tail) // 2 :])


def positives(items: Sequence[FaqItem], limit: int = MAX_POSITIVES) -> list[Positive]:
    """The FAQ's questions and their variants, deduplicated; at most `limit`, sampled by a hash
    of the text when there are more."""
    by_topic: dict[str, list[FaqItem]] = {}
    for item in items:
        by_topic.setdefault(item.topic, []).append(item)
    found: dict[str, str] = {}
    for item in items:
        for text in (*_forms(item.question), *_code_switched(item, by_topic[item.topic])):
            if text and text.strip():
                found.setdefault(text, item.topic)
    out = [Positive(text, topic) for text, topic in found.items()]
    if len(out) > limit:
        out = sorted(out, key=lambda p: hashlib.sha256(p.text.encode()).digest())[:limit]
    return out


def recalibrate(
    items: Sequence[FaqItem],
    encoder: Encoder,
    top_scores: TopScores,
    model: AbstainCalibration,
    *,
    retrieval: str,
    offtopic_target: float = DEFAULT_OFFTOPIC_TARGET,
    refusal_budget: float | None = None,
) -> CollectionCalibration:
    """Pick the threshold for `items` (see the module docstring). `top_scores` searches the new
    collection; `model` is the served variant's calibration: its anchors and weight, and its
    refusal budget unless one is given."""
    if not model.anchors:
        raise ValueError("the model's calibration has no off-topic anchors to score")
    budget = model.refusal_budget if refusal_budget is None else refusal_budget
    weight = model.offtopic_weight
    anchor_passages = encoder.encode_passages(model.anchors)

    def answer_scores(texts: Sequence[str], *, anchors: bool = False) -> Scores:
        vectors = encoder.encode_queries(list(texts))
        background = nearest(vectors, anchor_passages, exclude_self=anchors)
        return top_scores(texts, vectors) - weight * background

    pos = answer_scores([p.text for p in positives(items)])
    off = answer_scores(model.anchors, anchors=True)
    target_threshold = threshold_abstaining(off, offtopic_target)
    budget_threshold = threshold_for(pos, budget)
    chosen_by: Literal["offtopic_target", "refusal_budget", "labelled"]
    if model.faq_hash == content_hash(items) and model.retrieval == retrieval:
        threshold, chosen_by = model.min_score, "labelled"
    elif target_threshold <= budget_threshold:
        threshold, chosen_by = target_threshold, "offtopic_target"
    else:
        threshold, chosen_by = budget_threshold, "refusal_budget"
    return CollectionCalibration(
        min_score=threshold,
        offtopic_weight=weight,
        chosen_by=chosen_by,
        offtopic_target=offtopic_target,
        refusal_budget=budget,
        positives=int(pos.size),
        offtopic=int(off.size),
        positives_refused=round(float(np.mean(pos < threshold)), 6),
        offtopic_abstained=round(float(np.mean(off < threshold)), 6),
        target_threshold=target_threshold,
        budget_threshold=budget_threshold,
        model_min_score=model.min_score,
        anchors_hash=anchors_hash(model.anchors),
        retrieval=retrieval,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def collection_top_scores(store: Store, collection: str, encoder: Encoder) -> TopScores:
    """Each query's top score in `collection` as the service scores it: the store's own fused
    search, with the query's lexical tokens."""
    lexicon = Lexicon.for_encoder(encoder)

    def top(texts: Sequence[str], vectors: Vectors) -> Scores:
        specs = [SearchSpec(1, None, None, tokens) for tokens in lexicon.queries(texts)]
        rows = store.search_many(vectors, specs, collection)
        return np.array([row[0].score if row else 0.0 for row in rows], dtype=np.float64)

    return top


def annotator(
    store: Store,
    encoder: Encoder,
    items: Sequence[FaqItem],
    model: AbstainCalibration | None,
    *,
    retrieval: str,
    offtopic_target: float = DEFAULT_OFFTOPIC_TARGET,
) -> Annotate | None:
    """What a build of `items` adds to its new collection's metadata: the threshold picked for
    them (`Store.build(annotate=...)`). None, with a warning, without the model's anchors."""
    if model is None or not model.anchors:
        log.warning(
            "the abstain threshold is not picked for this FAQ: the served model has no "
            "calibrated rule with off-topic anchors (faq-model calibrate --variant ...)"
        )
        return None

    def annotate(collection: str) -> Mapping[str, Any]:
        started = time.perf_counter()
        picked = recalibrate(
            items,
            encoder,
            collection_top_scores(store, collection, encoder),
            model,
            retrieval=retrieval,
            offtopic_target=offtopic_target,
        )
        log.info("%s: %s (%.1f s)", collection, picked.describe(), time.perf_counter() - started)
        return {META_KEY: picked.model_dump()}

    return annotate
