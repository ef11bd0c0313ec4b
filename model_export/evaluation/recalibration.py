"""`faq-model evaluate-recalibration`: what the threshold a reindex picks for a FAQ does, measured
on questions labelled for that FAQ and the off-topic *test* split.

The FAQ is built into a temporary embedded index exactly as a reindex builds it (the served
encoder and variant, the fusion weights, `index_builder.indexing.faq_calibration` recording the
picked threshold in the collection's metadata), then three thresholds are compared with the served
rule on that index: the picked one, the model's calibrated one (the manifest's, for its
variant), and the refusal budget's on the FAQ's own question variants (what the offline rule
would pick from them). Neither the labelled questions nor the test split are read before the
threshold is picked: the recalibration sees only the FAQ and the model's off-topic anchors
(the off-topic dev split).

Mounted on `faq-model` by `register(app)`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from index_builder.answers.calibration import CalibrationDataError, Scores, nearest
from index_builder.answers.grouping import hit_topic
from index_builder.faq import FaqItem
from index_builder.indexing.faq_calibration import (
    DEFAULT_OFFTOPIC_TARGET,
    CollectionCalibration,
    annotator,
)
from index_builder.model.encoder import Encoder
from index_builder.model.manifest import AbstainCalibration
from index_builder.store import EmbeddedStore, SearchSpec
from index_builder.store.fusion import Retrieval
from index_builder.store.lexical import Lexicon
from model_export.calibrate import AnswerWeight, LexicalWeight

_FUSION = Retrieval()


@dataclass(frozen=True)
class RecalibrationFigures:
    picked: CollectionCalibration
    questions: int
    offtopic: int
    # Threshold -> (its value, % of the labelled questions answered, % of off-topic abstained)
    rows: dict[str, tuple[float, float, float]]
    top1: float  # % of the labelled questions whose first hit is their topic


def measure(
    items: Sequence[FaqItem],
    encoder: Encoder,
    model: AbstainCalibration,
    questions: Sequence[tuple[str, str]],
    offtopic: Sequence[str],
    *,
    retrieval: Retrieval | None = None,
    offtopic_target: float = DEFAULT_OFFTOPIC_TARGET,
) -> RecalibrationFigures:
    """Build `items` as a reindex does, then score `questions` ((text, topic)) and `offtopic`
    with the served rule under each threshold."""
    fusion = retrieval or Retrieval()
    lexicon = Lexicon.for_encoder(encoder)
    anchors = encoder.encode_passages(model.anchors)
    with tempfile.TemporaryDirectory(prefix="faq-recalibration-") as tmp:
        store = EmbeddedStore(Path(tmp), retrieval=fusion)
        try:
            annotate = annotator(
                store, encoder, items, model, retrieval=fusion.describe(),
                offtopic_target=offtopic_target,
            )  # fmt: skip
            info, _ = store.build(items, encoder, progress=False, annotate=annotate)

            def first_hits(texts: Sequence[str]) -> tuple[Scores, list[str]]:
                """Answer scores under the served rule, and each query's first topic."""
                vectors = encoder.encode_queries(list(texts))
                specs = [SearchSpec(1, None, None, t) for t in lexicon.queries(texts)]
                rows = store.search_many(vectors, specs, info.collection)
                top = np.array([r[0].score if r else 0.0 for r in rows], dtype=np.float64)
                score = top - model.offtopic_weight * nearest(vectors, anchors)
                return score, [hit_topic(r[0]) if r else "" for r in rows]

            ans, firsts = first_hits([q for q, _ in questions])
            off, _ = first_hits(offtopic)
        finally:
            store.close()
    picked = CollectionCalibration.from_meta(info.abstain)
    if picked is None:
        raise CalibrationDataError("the build recorded no threshold: no off-topic anchors")
    thresholds = {
        f"picked at reindex ({picked.chosen_by})": picked.min_score,
        "the model's (manifest)": model.min_score,
        f"off-topic target ({picked.offtopic_target:g} of the anchors)": picked.target_threshold,
        "refusal budget on the FAQ's variants": picked.budget_threshold,
    }
    rows = {
        name: (t, 100.0 * float(np.mean(ans >= t)), 100.0 * float(np.mean(off < t)))
        for name, t in thresholds.items()
    }
    right = [f == topic for f, (_, topic) in zip(firsts, questions, strict=True)]
    return RecalibrationFigures(picked, len(ans), len(off), rows, 100.0 * float(np.mean(right)))


def evaluate_recalibration(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv) a reindex would build.")],
    queries: Annotated[
        Path,
        typer.Option(help="Questions for that FAQ, JSONL {query, faq_id or topic}: measured only."),
    ],
    model_dir: Annotated[
        Path, typer.Option(envvar="FAQ_MODEL_DIR", help="Exported ONNX model directory.")
    ] = Path("artifacts/onnx/multilingual-e5-small"),
    variant: Annotated[str, typer.Option(envvar="FAQ_MODEL_VARIANT")] = "fp32",
    offtopic: Annotated[
        Path, typer.Option(help="Off-topic queries, JSONL; its test split is measured.")
    ] = Path("data/offtopic/queries.jsonl"),
    offtopic_target: Annotated[
        float,
        typer.Option(
            min=0.5, max=1.0, help="Share of off-topic anchors to abstain on (the service: 0.9)."
        ),
    ] = DEFAULT_OFFTOPIC_TARGET,
    answer_weight: AnswerWeight = _FUSION.answer_weight,
    lexical_weight: LexicalWeight = _FUSION.lexical_weight,
) -> None:
    """The threshold a reindex picks for FAQ, against the model's: questions answered, off-topic
    test split abstained."""
    from index_builder.faq import FaqFileError, read_faq
    from index_builder.model.encoder import OnnxEncoder  # onnxruntime import is slow; only here
    from index_builder.model.manifest import ManifestError, ModelManifest
    from model_export.calibration import load_labelled, load_offtopic

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        items = read_faq(faq)
        labelled = [(q.query, q.topic) for q in load_labelled(queries)]
        off = [q.query for q in load_offtopic("test", offtopic)]
        model = ModelManifest.read(model_dir).calibration(variant)
        if model is None:
            raise CalibrationDataError(
                f"{model_dir} has no rule for the {variant} variant: "
                f"faq-model calibrate --variant {variant}"
            )
        encoder = OnnxEncoder.load(model_dir, variant=variant)
        fusion = Retrieval(answer_weight=answer_weight, lexical_weight=lexical_weight)
        figures = measure(
            items, encoder, model, labelled, off, retrieval=fusion, offtopic_target=offtopic_target
        )
    except (FaqFileError, ManifestError, CalibrationDataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{encoder.name} ({variant}), {faq} ({len(items)} entries): "
        f"{figures.picked.describe()}; first hit on the question's topic: {figures.top1:.1f}%"
    )
    typer.echo(
        f"| threshold | min_score | {queries.name} answered ({figures.questions}) "
        f"| off-topic test split abstained ({figures.offtopic}) |\n|---|---|---|---|"
    )
    for name, (t, answered, abstained) in figures.rows.items():
        typer.echo(f"| {name} | {t:.4f} | {answered:.1f}% | {abstained:.1f}% |")


def register(app: typer.Typer) -> None:
    """Add `evaluate-recalibration` to a typer app (`faq-model`)."""
    app.command("evaluate-recalibration")(evaluate_recalibration)
