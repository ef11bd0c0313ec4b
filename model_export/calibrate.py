"""`faq-model calibrate`: the abstain rule calibrated on labelled dev data, stored with the model
(`faq-model evaluate-answers` measures with it).

Scores are the served ones: `FaqSearch` builds the FAQ into an in-memory collection with
the embedded store's rows (`Entries`) and searches them with its matrix search and the
fusion weights given (question, answer and lexical parts: `index_builder.store.fusion`), so the
figures do not depend on a running service and cannot drift from what it computes.

Exit codes of the command: 0 done; 2 bad input (a FAQ, labelled or off-topic queries file, a
model directory). Mounted on `faq-model` by `register(app)`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from index_builder.answers.calibration import AbstainRule, Scores, Vectors, nearest
from index_builder.answers.grouping import Lookup, hit_topic
from index_builder.faq import FaqItem, content_hash
from index_builder.model.encoder import Encoder
from index_builder.model.manifest import AbstainCalibration
from index_builder.store import SearchSpec
from index_builder.store.embedded import Entries
from index_builder.store.fusion import Retrieval
from index_builder.store.lexical import Lexicon
from model_export.calibration import (
    DEFAULT_REFUSAL_BUDGET,
    Calibration,
    CalibrationDataError,
    LabelledQuery,
    OffTopicQuery,
    calibrate,
    matched,
)


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


@dataclass(frozen=True)
class DevScores:
    """The dev queries' top scores and nearest-anchor similarities under one variant."""

    answerable_top: Scores
    answerable_background: Scores
    offtopic_top: Scores
    offtopic_background: Scores

    def answer_scores(self, weight: float) -> Scores:
        """Answerable then off-topic, as the rule scores them at `weight`."""
        return np.concatenate(
            [
                self.answerable_top - weight * self.answerable_background,
                self.offtopic_top - weight * self.offtopic_background,
            ]
        )


def dev_scores(faq: FaqSearch, answerable: Sequence[str], anchors: Sequence[str]) -> DevScores:
    """The anchors are the off-topic dev queries themselves."""
    encoder = faq.encoder
    anchor_vectors = encoder.encode_passages(list(anchors))
    ans_q = encoder.encode_queries(list(answerable))
    off_q = encoder.encode_queries(list(anchors))
    return DevScores(
        faq.top_scores(answerable, ans_q),
        nearest(ans_q, anchor_vectors),
        faq.top_scores(anchors, off_q),
        # Each off-topic query against the others: its own passage would flatter the rule.
        nearest(off_q, anchor_vectors, exclude_self=True),
    )


def calibrate_model(
    faq: FaqSearch,
    answerable: Sequence[LabelledQuery],
    offtopic: Sequence[OffTopicQuery],
    *,
    refusal_budget: float = DEFAULT_REFUSAL_BUDGET,
    variant: str = "fp32",
    reference: tuple[FaqSearch, AbstainCalibration] | None = None,
) -> tuple[Calibration, AbstainCalibration]:
    """Calibrate on dev data: the weight and threshold within the refusal budget, or, with a
    `reference` (another variant's FAQ search and rule), its weight and the threshold that
    decides like it (`model_export.calibration.matched`)."""
    if not answerable or not offtopic:
        raise CalibrationDataError("calibration needs answerable and off-topic dev queries")
    texts = [q.query for q in answerable]
    anchors = [q.query for q in offtopic]
    mine = dev_scores(faq, texts, anchors)
    if reference is None:
        result = calibrate(
            mine.answerable_top,
            mine.answerable_background,
            mine.offtopic_top,
            mine.offtopic_background,
            refusal_budget=refusal_budget,
        )
    else:
        ref_faq, ref_rule = reference
        weight = ref_rule.offtopic_weight
        result = matched(
            dev_scores(ref_faq, texts, anchors).answer_scores(weight),
            ref_rule.min_score,
            mine.answer_scores(weight),
            len(texts),
            weight,
        )
    stored = AbstainCalibration(
        min_score=round(result.min_score, 6),
        offtopic_weight=result.offtopic_weight,
        # Kept at weight 0 too: a reindex scores the new FAQ against them (its negatives).
        anchors=anchors,
        refusal_budget=refusal_budget,
        answerable=len(answerable),
        offtopic=len(offtopic),
        dev_refused=round(result.refused, 6),
        dev_abstained=round(result.abstained, 6),
        faq_hash=content_hash(faq.items),
        variant=variant,
        matched_to=reference[1].variant if reference is not None else "",
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


# --- the command (options shared with `faq-model evaluate-answers`) --------------------------

_FUSION = Retrieval()
AnswerWeight = Annotated[
    float,
    typer.Option(
        envvar="FAQ_ANSWER_WEIGHT",
        min=0.0,
        help="Weight of the answer vector in the fused score (0: questions only).",
    ),
]
LexicalWeight = Annotated[
    float,
    typer.Option(
        envvar="FAQ_LEXICAL_WEIGHT", min=0.0, help="Weight of the lexical (BM25) score (0: off)."
    ),
]


def calibrate_command(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv) the index is built from.")],
    model_dir: Annotated[
        Path, typer.Option(envvar="FAQ_MODEL_DIR", help="Exported ONNX model directory.")
    ] = Path("artifacts/onnx/multilingual-e5-small"),
    variant: Annotated[
        str,
        typer.Option(
            envvar="FAQ_MODEL_VARIANT",
            help="The variant whose scores are calibrated (fp32, int8, fp16): each its own rule.",
        ),
    ] = "fp32",
    answerable: Annotated[
        Path, typer.Option(help="Answerable dev queries, JSONL {query, faq_id (the topic)}.")
    ] = Path("data/shopper/dev.jsonl"),
    offtopic: Annotated[
        Path, typer.Option(help="Off-topic queries, JSONL {query, ...}; its dev split is used.")
    ] = Path("data/offtopic/queries.jsonl"),
    refusal_budget: Annotated[
        float,
        typer.Option(min=0.0, max=0.5, help="Share of answerable dev queries it may refuse."),
    ] = 0.02,
    match_variant: Annotated[
        str,
        typer.Option(
            help="Another variant than this one is calibrated to decide like it: its stored "
            "rule (same FAQ and weights) gives the weight, the threshold keeps as large a "
            "share of the dev queries below it; 'none': the variant's own refusal budget."
        ),
    ] = "fp32",
    write: Annotated[
        bool, typer.Option(help="Store the rule in the model's manifest.json (else print only).")
    ] = True,
    answer_weight: AnswerWeight = _FUSION.answer_weight,
    lexical_weight: LexicalWeight = _FUSION.lexical_weight,
) -> None:
    """Compute the default min_score (and off-topic weight) from dev data; store it with the model.

    The service serving that variant reads it from the manifest as the default of `min_score`
    (a reindex re-picks the threshold for its FAQ); FAQ_MIN_SCORE overrides it. Calibrate
    again after a new export or a changed FAQ.
    """
    from index_builder.faq import FaqFileError, content_hash, read_faq
    from index_builder.model.encoder import OnnxEncoder  # onnxruntime import is slow; only here
    from index_builder.model.manifest import ManifestError, ModelManifest
    from model_export.calibration import load_labelled, load_offtopic

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:  # warnings only, as faq-index ran it; -v: all
        logging.getLogger().setLevel(logging.WARNING)
    try:
        items = read_faq(faq)
        dev = load_labelled(answerable)
        off = load_offtopic("dev", offtopic)
        encoder = OnnxEncoder.load(model_dir, variant=variant)
        fusion = Retrieval(answer_weight=answer_weight, lexical_weight=lexical_weight)
        reference = None
        if match_variant not in ("none", variant):
            ref_rule = ModelManifest.read(model_dir).calibration(match_variant)
            if (
                ref_rule is None
                or ref_rule.faq_hash != content_hash(items)
                or ref_rule.retrieval != fusion.describe()
            ):
                raise CalibrationDataError(
                    f"no {match_variant} rule stored for this FAQ and these weights to match: "
                    f"run faq-model calibrate --variant {match_variant} first (or "
                    "--match-variant none)"
                )
            ref_encoder = OnnxEncoder.load(model_dir, variant=match_variant)
            reference = (FaqSearch(items, ref_encoder, fusion), ref_rule)
        result, stored = calibrate_model(
            FaqSearch(items, encoder, fusion),
            dev,
            off,
            refusal_budget=refusal_budget,
            variant=variant,
            reference=reference,
        )
    except (FaqFileError, ManifestError, CalibrationDataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for t in result.trials:
        typer.echo(
            f"  weight {t.weight:.2f}: min_score {t.min_score:.4f}, dev refused "
            f"{100 * t.refused:.1f}%, off-topic dev abstained {100 * t.abstained:.1f}%"
        )
    if stored.matched_to:
        typer.echo(f"  matched to the {stored.matched_to} variant's decisions on the dev queries")
    typer.echo(
        f"{encoder.name} ({variant}): min_score {stored.min_score:.4f}, off-topic weight "
        f"{stored.offtopic_weight} ({len(stored.anchors)} anchors); dev: "
        f"{100 * stored.dev_refused:.1f}% of {len(dev)} answerable refused, "
        f"{100 * stored.dev_abstained:.1f}% of {len(off)} off-topic abstained "
        f"(score: {stored.retrieval})"
    )
    if write:
        # The other variants' rules stay: each variant is calibrated on its own scores.
        path = ModelManifest.read(model_dir).with_calibration(stored).write(model_dir)
        typer.echo(f"stored in {path} for the {variant} variant")
    else:
        typer.echo(f"FAQ_MIN_SCORE={stored.min_score:.4f}")


def register(app: typer.Typer) -> None:
    """Mount `calibrate` on `faq-model`."""
    app.command("calibrate")(calibrate_command)
