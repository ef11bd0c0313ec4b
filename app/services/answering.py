"""From search hits to what a shopper is shown: one answer per topic in their language, or none.

`Answering.answer_batch` searches a batch and shapes each query's hits: grouping by topic in
the requested language, else the query's, else English (`index_builder.answers.grouping`),
and abstain below the threshold in force (`index_builder.answers.calibration`).

A request without `min_score` gets, in order: `FAQ_MIN_SCORE`; else the live collection's,
picked for its FAQ at reindex (`index_builder.indexing.faq_calibration`), used only with the
rule and fusion weights it was picked with; else the served variant's calibrated one; else none.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Counter

from index_builder.answers.calibration import AbstainRule
from index_builder.answers.grouping import (
    LangReason,
    Lookup,
    fetch_limit,
    group_by_topic,
    languages_to_fetch,
    merge_hits,
)
from index_builder.answers.query_lang import OTHER_LANGUAGES, QueryLanguageDetector
from index_builder.indexing.faq_calibration import CollectionCalibration, anchors_hash
from index_builder.model.encoder import Encoder
from index_builder.model.manifest import AbstainCalibration, ManifestError, ModelManifest
from index_builder.store import Hit, IndexInfo, SearchSpec
from index_builder.store.fusion import Retrieval
from index_builder.store.lexical import Lexicon
from index_builder.store.matrix import MatrixSnapshot

log = logging.getLogger(__name__)

# Searches `vectors[i]` with `specs[i]` = (limit, lang filter, market): one call for a batch.
BatchSearch = Callable[[NDArray[np.float32], Sequence[SearchSpec]], Awaitable[list[list[Hit]]]]


@dataclass(frozen=True)
class Threshold:
    min_score: float | None
    source: Literal["FAQ_MIN_SCORE", "collection", "model", "none"]
    # The collection whose threshold it is (source "collection").
    collection: str | None = None


class Thresholds:
    """The threshold in force for a request without `min_score` (module docstring's order)."""

    def __init__(
        self,
        model: AbstainCalibration | None,
        *,
        override: float | None = None,
        retrieval: str = "",
        use_collection: bool = True,
    ) -> None:
        self.model = model
        self.override = override
        self.retrieval = retrieval
        self.use_collection = use_collection
        self._anchors = anchors_hash(model.anchors) if model is not None else ""
        # Per (collection, created_at): its usable threshold or None. A version never changes
        # its record, so each is read (and warned about) once.
        self._seen: dict[tuple[str, str], float | None] = {}

    def for_index(self, index: IndexInfo | None) -> Threshold:
        if self.override is not None:
            return Threshold(self.override, "FAQ_MIN_SCORE")
        if index is not None and self.use_collection:
            key = (index.collection, index.created_at)
            if key not in self._seen:
                if len(self._seen) > 64:  # rollbacks and reindexes over a long uptime
                    self._seen.clear()
                self._seen[key] = self._usable(index)
            picked = self._seen[key]
            if picked is not None:
                return Threshold(picked, "collection", index.collection)
        if self.model is None:
            return Threshold(None, "none")
        return Threshold(self.model.min_score, "model")

    def _usable(self, index: IndexInfo) -> float | None:
        record = CollectionCalibration.from_meta(index.abstain)
        if record is None or self.model is None:
            return None
        if record.offtopic_weight != self.model.offtopic_weight:
            why = (
                f"off-topic weight {record.offtopic_weight} (served: {self.model.offtopic_weight})"
            )
        elif record.anchors_hash != self._anchors:
            why = "other off-topic anchors than the served rule's"
        elif record.retrieval != self.retrieval:
            why = f"fusion {record.retrieval} (served: {self.retrieval})"
        else:
            return record.min_score
        log.warning(
            "the abstain threshold picked for %s was scored with %s: the model's serves; "
            "reindex to pick one for the served rule",
            index.collection,
            why,
        )
        return None


@dataclass(frozen=True)
class QuerySpec:
    """One query as a request asks for it: `lang_filter` keeps only entries in that language;
    `prefer_lang` is the language an answer is shown in when its topic has one."""

    text: str
    top_k: int
    lang_filter: str | None = None
    market: str | None = None
    group: bool = False
    prefer_lang: str | None = None
    min_score: float | None = None


class _Detect(enum.Enum):
    HERE = "detect the query's language in shape()"


@dataclass(frozen=True)
class Shaped:
    """One query's answer: the entries to show, why each is in its language, and whether the
    service answers at all."""

    hits: list[Hit]
    lang_reasons: list[LangReason]
    topics: list[str]
    # Each answer's rank score: its topic's best hit, whichever language that was in (the
    # entry shown may be a translation that scored a little lower).
    scores: list[float]
    answered: bool
    answer_score: float | None
    query_lang: str | None


class Answering:
    def __init__(
        self,
        rule: AbstainRule,
        detector: QueryLanguageDetector | None = None,
        *,
        abstained: Counter | None = None,
        lexicon: Lexicon | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.rule = rule
        self.thresholds = thresholds
        self.detector = detector
        # Tokens of the lexical part of a search (None: the part is off, nothing to tokenise).
        self.lexicon = lexicon
        self.abstained = abstained

    def threshold(self, index: IndexInfo | None) -> Threshold:
        """The threshold of a search whose request sets none, against the live `index`: with
        `thresholds` (the service's) the collection's first, else the rule's own."""
        if self.thresholds is not None:
            return self.thresholds.for_index(index)
        mine = self.rule.min_score
        return Threshold(mine, "none" if mine is None else "model")

    def query_lang(self, text: str) -> str | None:
        return self.detector.detect(text) if self.detector is not None else None

    async def answer_batch(
        self,
        specs: Sequence[QuerySpec],
        vectors: NDArray[np.float32],
        search: BatchSearch,
        max_query_chars: int,
        *,
        topic_entries: MatrixSnapshot | None = None,
    ) -> list[Shaped]:
        """Search every query of a batch in one call, then shape each one's hits.

        With `topic_entries` (an in-process index: its live snapshot) a topic's entry in the
        wanted language is looked up there; without (a server), searches restricted to the
        wanted non-English languages go in the same call as the rest, since a second round
        trip costs more than it saves."""
        texts = [s.text[:max_query_chars] for s in specs]
        detected = [self.query_lang(t) for t in texts]
        limits = [fetch_limit(s.top_k, group=s.group) for s in specs]
        lexical = self.lexicon.queries(texts) if self.lexicon is not None else [()] * len(specs)
        requests: list[SearchSpec] = [
            SearchSpec(k, s.lang_filter, s.market, tokens)
            for k, s, tokens in zip(limits, specs, lexical, strict=True)
        ]
        # With filters.lang set every hit is in one language already.
        extra = [
            (i, lang)
            for i, s in enumerate(specs)
            if topic_entries is None and s.group and s.lang_filter is None
            for lang in languages_to_fetch(s.prefer_lang, detected[i])
        ]
        more = [SearchSpec(limits[i], lang, specs[i].market, lexical[i]) for i, lang in extra]
        rows = [i for i, _ in extra]
        both = await search(
            np.concatenate([vectors, vectors[rows]]) if rows else vectors, requests + more
        )
        hits = both[: len(specs)]
        for (i, _), row in zip(extra, both[len(specs) :], strict=True):
            hits[i] = merge_hits(hits[i], row)
        return [
            self.shape(
                text,
                vector,
                row,
                s.top_k,
                group=s.group,
                lang=s.prefer_lang,
                min_score=s.min_score,
                detected=lang,
                # With filters.lang set no other language may be shown.
                lookup=partial(topic_entries.entry_in, vector, market=s.market)
                if topic_entries is not None and s.lang_filter is None
                else None,
            )
            for text, vector, row, s, lang in zip(
                texts, vectors, hits, specs, detected, strict=True
            )
        ]

    def shape(
        self,
        text: str,
        vector: NDArray[np.float32],
        hits: Sequence[Hit],
        top_k: int,
        *,
        group: bool = True,
        lang: str | None = None,
        min_score: float | None = None,
        detected: str | _Detect | None = _Detect.HERE,
        lookup: Lookup[Hit] | None = None,
    ) -> Shaped:
        top = max((h.score for h in hits), default=None)
        answered, score = self.rule.answered(top, vector, min_score)
        if isinstance(detected, _Detect):
            detected = self.query_lang(text)
        if not answered:
            if self.abstained is not None:
                self.abstained.inc()
            return Shaped([], [], [], [], False, score, detected)
        answers = group_by_topic(
            hits, top_k, requested=lang, detected=detected, group=group, lookup=lookup
        )
        return Shaped(
            [a.hit for a in answers],
            [a.lang_reason for a in answers],
            [a.topic for a in answers],
            [a.topic_score for a in answers],
            True,
            score,
            detected,
        )


def served_calibration(
    model_dir: Path, fingerprint: str, variant: str = "fp32"
) -> AbstainCalibration | None:
    """The abstain rule calibrated for the served model and variant, or None: no manifest in
    `model_dir`, never calibrated, or the manifest describes another model than the one served.
    A variant never calibrated gets another variant's rule, with a warning: a rule a little off
    is closer than none."""

    try:
        manifest = ModelManifest.read(model_dir)
        described = manifest.fingerprint(variant)
    except ManifestError:
        return None
    calibration = manifest.calibration(variant)
    others = [*manifest.calibrations.values(), *([manifest.abstain] if manifest.abstain else [])]
    if calibration is None and not others:
        return None
    if described != fingerprint:
        log.warning(
            "the abstain rule in %s is for %s, not the served %s: ignored",
            model_dir,
            described,
            fingerprint,
        )
        return None
    if calibration is None:
        # fp32 first: the variant the others approximate.
        calibration = min(others, key=lambda c: c.variant != "fp32")
        log.warning(
            "the abstain rule was calibrated on the %s variant and %s is served: run "
            "faq-model calibrate --variant %s",
            calibration.variant,
            variant,
            variant,
        )
    return calibration


@lru_cache(maxsize=4)
def query_language_detector(
    languages: tuple[str, ...], low_accuracy: bool
) -> QueryLanguageDetector:
    """One detector per process and setting: read-only once built, shared by every app."""
    return QueryLanguageDetector(languages, other_languages=(), low_accuracy=low_accuracy)


def build_answering(
    encoder: Encoder,
    calibration: AbstainCalibration | None,
    *,
    min_score: float | None = None,
    query_languages: Sequence[str] = OTHER_LANGUAGES,
    low_accuracy: bool = True,
    abstained: Counter | None = None,
    retrieval: Retrieval | None = None,
    collection_thresholds: bool = True,
) -> Answering:
    """The service's answering: call before the inference worker owns the encoder (the
    off-topic anchors are encoded here, once). `min_score` (FAQ_MIN_SCORE) overrides the
    calibrated threshold; the anchors stay. With `collection_thresholds` (FAQ_RECALIBRATE)
    the live collection's threshold, picked for its FAQ at reindex, comes before the model's
    (`thresholds.Thresholds`)."""
    # At weight 0 the anchors are stored for a reindex's recalibration, not needed here.
    if calibration is not None and calibration.anchors and calibration.offtopic_weight > 0:
        anchors = encoder.encode_passages(calibration.anchors)
        rule = AbstainRule(calibration.min_score, calibration.offtopic_weight, anchors)
    else:
        rule = AbstainRule(calibration.min_score if calibration else None)
    if min_score is not None:
        rule.min_score = min_score
    log.info(
        "abstain below %s (%s)",
        "nothing" if rule.min_score is None else f"{rule.min_score:.4f}",
        "FAQ_MIN_SCORE"
        if min_score is not None
        else ("calibrated" if calibration else "not calibrated: faq-model calibrate"),
    )
    fusion = retrieval or Retrieval()
    if calibration is not None and min_score is None and calibration.retrieval != fusion.describe():
        # The score a threshold reads depends on the fusion weights it was calibrated with.
        log.warning(
            "the abstain rule was calibrated with %s and the service fuses with %s: run "
            "faq-model calibrate with the served weights",
            calibration.retrieval or "question vectors only",
            fusion.describe(),
        )
    detector = query_language_detector(tuple(query_languages), low_accuracy)
    lexicon = Lexicon.for_encoder(encoder) if fusion.lexical_weight > 0 else None
    thresholds = Thresholds(
        calibration,
        override=min_score,
        retrieval=fusion.describe(),
        use_collection=collection_thresholds,
    )
    return Answering(rule, detector, abstained=abstained, lexicon=lexicon, thresholds=thresholds)
