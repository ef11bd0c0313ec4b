"""`faq-index`: build the FAQ index from a file with the exported encoder.

Exit codes: 0 done; 2 bad input (a FAQ, golden or labelled queries file, a model directory, an
index that cannot be written); 3 the new collection failed the quality gate (`build --golden`):
it is deleted and the alias stays where it was, so a pipeline can tell "fix the input" from
"the model got worse".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from index_builder.faq import FaqFileError, read_faq, topic_of
from index_builder.manifest import ManifestError
from index_builder.quality_gate import (
    GateReport,
    GoldenFileError,
    GoldenResult,
    QualityGate,
    QualityGateError,
    draw_golden,
    load_golden,
    load_labelled,
)
from index_builder.store import CollectionLayout, EmbeddedStore, FaqIndexError, open_store
from index_builder.store.fusion import Retrieval, retrieval_variants

GATE_FAILED = 3

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.callback()
def _root() -> None:
    """Keeps `faq-index build` a subcommand however many commands there are."""


def _echo_failures(failures: Sequence[GoldenResult]) -> None:
    for r in failures:
        got = ", ".join(r.top_ids) or "nothing"
        typer.echo(f"  {r.query!r}: expected {r.expected_id} in top {r.top_k}, got {got}", err=True)


@cli.command()
def build(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv).")],
    model_dir: Annotated[
        Path, typer.Option(envvar="FAQ_MODEL_DIR", help="Exported ONNX model directory.")
    ] = Path("artifacts/onnx/multilingual-e5-small"),
    variant: Annotated[str, typer.Option(envvar="FAQ_MODEL_VARIANT")] = "fp32",
    alias: Annotated[str, typer.Option(envvar="FAQ_COLLECTION_ALIAS")] = "faq",
    qdrant_url: Annotated[
        str | None, typer.Option(envvar=["FAQ_QDRANT_URL", "QDRANT_URL"], help="Qdrant server.")
    ] = None,
    qdrant_api_key: Annotated[
        str | None, typer.Option(envvar=["FAQ_QDRANT_API_KEY", "QDRANT_API_KEY"])
    ] = None,
    index_path: Annotated[
        Path,
        typer.Option(
            envvar=["FAQ_INDEX_PATH", "FAQ_QDRANT_PATH"], help="Embedded store directory."
        ),
    ] = Path("var/index"),
    keep: Annotated[
        int,
        typer.Option(min=1, envvar="FAQ_KEEP_COLLECTIONS", help="Collections kept for rollback."),
    ] = 3,
    force: Annotated[bool, typer.Option(help="Rebuild even if nothing changed.")] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, envvar="FAQ_ENCODE_BATCH_SIZE", help="Texts per encoder call.")
    ] = 64,
    lock_timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for the embedded store's write lock."),
    ] = 120.0,
    golden: Annotated[
        Path | None,
        typer.Option(
            envvar="FAQ_GOLDEN_QUERIES",
            help="Golden queries (JSON list or JSONL of {query, expected_id, top_k?, match?}) "
            "the new collection must pass before the alias moves; exit 3 if it does not.",
        ),
    ] = None,
    golden_top_k: Annotated[
        int,
        typer.Option(
            envvar="FAQ_GOLDEN_TOP_K", min=1, max=100, help="top k of golden queries without one."
        ),
    ] = 5,
    shard_number: Annotated[
        int,
        typer.Option(min=1, envvar="FAQ_SHARD_NUMBER", help="Qdrant cluster: shards."),
    ] = 1,
    replication_factor: Annotated[
        int,
        typer.Option(min=1, envvar="FAQ_REPLICATION_FACTOR", help="Qdrant cluster: copies."),
    ] = 1,
    write_consistency: Annotated[
        int,
        typer.Option(
            "--write-consistency-factor",
            min=1,
            envvar="FAQ_WRITE_CONSISTENCY_FACTOR",
            help="Qdrant cluster: replicas a write waits for.",
        ),
    ] = 1,
) -> None:
    """Embed the FAQ questions into a new collection and move the alias to it."""
    from index_builder.encoder import OnnxEncoder  # onnxruntime import is slow; only here

    try:
        layout = CollectionLayout(shard_number, replication_factor, write_consistency)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--write-consistency-factor") from None

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report: GateReport | None = None
    previous: str | None = None
    attempted: str | None = None
    try:
        items = read_faq(faq)
        # Before the model loads: a bad golden file costs nothing and changes nothing.
        queries = load_golden(golden) if golden else None
        encoder = OnnxEncoder.load(model_dir, variant=variant)
        index = open_store(
            url=qdrant_url,
            api_key=qdrant_api_key,
            path=index_path,
            alias=alias,
            keep=keep,
            layout=layout,
        )
        if isinstance(index, EmbeddedStore):
            index.lock_timeout_s = lock_timeout
        try:
            gate = QualityGate(queries, encoder, golden_top_k) if queries else None
            previous = index.current_collection()

            def validate(collection: str) -> None:
                nonlocal report, attempted
                if gate is None:
                    return
                attempted = collection
                report = gate.check(index, collection)
                if not report.passed:
                    raise QualityGateError(report)

            info, built = index.build(
                items,
                encoder,
                batch_size=batch_size,
                skip_if_unchanged=not force,
                validate=validate,
            )
            if gate is not None and not built:
                # Nothing was built (same FAQ, same model), so the gate answers for the live
                # collection: exit 0 always means the alias is on a collection that passes.
                report = gate.check(index, info.collection)
        finally:
            index.close()
    except QualityGateError as exc:
        typer.echo(
            f"error: {exc.report.failed} of {exc.report.total} golden queries failed on "
            f"{attempted}; it is deleted and alias {alias!r} stays on {previous or 'nothing'}:",
            err=True,
        )
        _echo_failures(exc.report.failures())
        raise typer.Exit(GATE_FAILED) from None
    except (FaqFileError, ManifestError, FaqIndexError, GoldenFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if report is not None:
        if not report.passed:
            typer.echo(
                f"error: nothing was built (FAQ and model unchanged) and the live "
                f"{info.collection} fails {report.failed} of {report.total} golden queries:",
                err=True,
            )
            _echo_failures(report.failures())
            raise typer.Exit(GATE_FAILED)
        typer.echo(
            f"quality gate: {report.total - report.failed}/{report.total} golden queries passed"
        )
    verb = "built" if built else "unchanged"
    typer.echo(
        f"{verb}: alias {info.alias!r} -> {info.collection} ({info.points} entries, {info.model})"
    )


@cli.command()
def golden(
    queries: Annotated[
        Path, typer.Option(help="Labelled queries, JSONL {query, faq_id (the topic), ...}.")
    ],
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv) the index is built from.")],
    out: Annotated[Path, typer.Option(help="Golden queries file to write (JSON list).")],
    model_dir: Annotated[
        Path, typer.Option(envvar="FAQ_MODEL_DIR", help="Exported ONNX model directory.")
    ] = Path("artifacts/onnx/multilingual-e5-small"),
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Model variant; repeat it to keep queries every variant answers."),
    ] = None,
    per_topic: Annotated[int, typer.Option(min=1, help="Golden queries per topic, at most.")] = 1,
    top_k: Annotated[
        int, typer.Option(min=1, max=100, help="Rank the topic must reach, written per query.")
    ] = 5,
) -> None:
    """Draw golden queries for `build --golden` from labelled queries (e.g. a dev split).

    Per topic, the first `--per-topic` queries in a stable hash order that the model answers
    with the topic (any of its entries) within `--top-k`. Draw them with the model that serves
    now, and gate the next one with them: it has to keep what this one could do.
    """
    from index_builder.encoder import OnnxEncoder  # onnxruntime import is slow; only here

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        items = read_faq(faq)
        rows = load_labelled(queries, [topic_of(i.id) for i in items])
        encoders = [OnnxEncoder.load(model_dir, variant=v) for v in variant or ["fp32"]]
        drawn = draw_golden(rows, items, encoders, per_topic=per_topic, top_k=top_k)
    except (FaqFileError, ManifestError, FaqIndexError, GoldenFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{drawn.topics - len(drawn.missing)} of {drawn.topics} topics got a golden query "
        f"({len(drawn.golden)} queries); {drawn.tried} labelled queries tried, "
        f"{drawn.within} within top {top_k}"
    )
    if drawn.missing:
        typer.echo(f"no golden query for: {', '.join(drawn.missing)}")
    if not drawn.golden:
        # load_golden refuses an empty file, so writing one would only move the failure.
        typer.echo(
            f"error: no labelled query is answered within top {top_k}: nothing written", err=True
        )
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows_out = [g.model_dump(exclude_none=True) for g in drawn.golden]
    out.write_text(json.dumps(rows_out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"written to {out}")


def main() -> None:
    cli()


# --- answers: abstain calibration and the shopper-facing figures ------------------------------

_FUSION = Retrieval()
# The grid the fusion defaults were chosen on (`evaluate-answers --grid`, dev split only).
FUSION_GRID_ANSWER = (0.0, 0.25, 0.5, 0.75, 1.0)
FUSION_GRID_LEXICAL = (0.0, 0.001, 0.003, 0.005, 0.01)
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

DEFAULT_MODELS = (
    ("base", Path("artifacts/onnx/multilingual-e5-small")),
    ("shop", Path("artifacts/onnx/shop")),
)


@cli.command()
def calibrate(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv) the index is built from.")],
    model_dir: Annotated[
        Path, typer.Option(envvar="FAQ_MODEL_DIR", help="Exported ONNX model directory.")
    ] = Path("artifacts/onnx/multilingual-e5-small"),
    variant: Annotated[str, typer.Option(envvar="FAQ_MODEL_VARIANT")] = "fp32",
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
    write: Annotated[
        bool, typer.Option(help="Store the rule in the model's manifest.json (else print only).")
    ] = True,
    answer_weight: AnswerWeight = _FUSION.answer_weight,
    lexical_weight: LexicalWeight = _FUSION.lexical_weight,
) -> None:
    """Compute the default min_score (and off-topic weight) from dev data; store it with the model.

    The service reads it from the manifest as the default of `min_score`; FAQ_MIN_SCORE
    overrides it. Calibrate again after a new export or a changed FAQ.
    """
    from index_builder.answer_eval import FaqSearch, calibrate_model
    from index_builder.calibration import CalibrationDataError, load_labelled, load_offtopic
    from index_builder.encoder import OnnxEncoder
    from index_builder.manifest import ModelManifest

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        items = read_faq(faq)
        dev = load_labelled(answerable)
        off = load_offtopic("dev", offtopic)
        encoder = OnnxEncoder.load(model_dir, variant=variant)
        fusion = Retrieval(answer_weight=answer_weight, lexical_weight=lexical_weight)
        result, stored = calibrate_model(
            FaqSearch(items, encoder, fusion),
            dev,
            off,
            refusal_budget=refusal_budget,
            variant=variant,
        )
    except (FaqFileError, ManifestError, CalibrationDataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for t in result.trials:
        typer.echo(
            f"  weight {t.weight:.2f}: min_score {t.min_score:.4f}, dev refused "
            f"{100 * t.refused:.1f}%, off-topic dev abstained {100 * t.abstained:.1f}%"
        )
    typer.echo(
        f"{encoder.name}: min_score {stored.min_score:.4f}, off-topic weight "
        f"{stored.offtopic_weight} ({len(stored.anchors)} anchors); dev: "
        f"{100 * stored.dev_refused:.1f}% of {len(dev)} answerable refused, "
        f"{100 * stored.dev_abstained:.1f}% of {len(off)} off-topic abstained "
        f"(score: {stored.retrieval})"
    )
    if write:
        manifest = ModelManifest.read(model_dir)
        manifest.abstain = stored
        path = manifest.write(model_dir)
        typer.echo(f"stored in {path}")
    else:
        typer.echo(f"FAQ_MIN_SCORE={stored.min_score:.4f}")


def _parse_models(values: list[str] | None) -> list[tuple[str, Path]]:
    if not values:
        return [(n, p) for n, p in DEFAULT_MODELS if (p / "manifest.json").is_file()]
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        out.append((name, Path(path)) if sep else (Path(v).name, Path(v)))
    return out


@cli.command("evaluate-answers")
def evaluate_answers(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv).")] = Path("data/faq.jsonl"),
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=DIR of an exported model; repeat. Default: base and shop."),
    ] = None,
    shopper_dir: Annotated[Path, typer.Option(help="dev.jsonl and test.jsonl.")] = Path(
        "data/shopper"
    ),
    offtopic: Annotated[Path, typer.Option()] = Path("data/offtopic/queries.jsonl"),
    examples: Annotated[Path, typer.Option(help="README examples.")] = Path("data/examples.json"),
    low_accuracy: Annotated[
        bool, typer.Option(help="Lingua's low-accuracy mode for the query language.")
    ] = True,
    answer_weight: AnswerWeight = _FUSION.answer_weight,
    lexical_weight: LexicalWeight = _FUSION.lexical_weight,
    grid: Annotated[
        bool,
        typer.Option(help="Also print the fusion weight grid on the shopper dev split (tuning)."),
    ] = False,
) -> None:
    """Both abstain figures (off-topic test split abstained, shopper test split wrongly refused),
    grouping on/off, the served language, and the answer and lexical parts on/off, per model,
    in one run."""
    from index_builder.answer_eval import (
        FaqSearch,
        QuerySet,
        abstain_figures,
        calibrate_model,
        detection_figures,
        grouping_figures,
        load_examples,
        retrieval_figures,
        rule_for,
    )
    from index_builder.calibration import CalibrationDataError, load_labelled, load_offtopic
    from index_builder.encoder import OnnxEncoder
    from index_builder.faq import content_hash
    from index_builder.manifest import ModelManifest
    from index_builder.query_lang import build_detector

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    models = _parse_models(model)
    if not models:
        typer.echo("error: no model found (make model, or --model NAME=DIR)", err=True)
        raise typer.Exit(2)
    try:
        items = read_faq(faq)
        dev = load_labelled(shopper_dir / "dev.jsonl")
        test = load_labelled(shopper_dir / "test.jsonl")
        off_dev = load_offtopic("dev", offtopic)
        off_test = load_offtopic("test", offtopic)
        ex = load_examples(examples)
    except (FaqFileError, CalibrationDataError, OSError, ValueError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    languages = sorted({i.lang for i in items})
    detector, built_s = build_detector(languages, low_accuracy=low_accuracy)
    texts = [q.query for q in test]
    typer.echo(
        f"query language: Lingua {'low' if low_accuracy else 'high'} accuracy, built in "
        f"{built_s:.2f} s, {detector.ms_per_query(texts):.3f} ms/query over {len(texts)} queries"
    )
    detected = detection_figures(detector, test, languages)
    typer.echo(
        "  detected right on the shopper test split: "
        + ", ".join(f"{k} {100 * r / t:.1f}% of {t}" for k, (r, t) in sorted(detected.items()))
    )
    digest = content_hash(items)
    for name, model_dir in models:
        try:
            encoder = OnnxEncoder.load(model_dir)
            stored = ModelManifest.read(model_dir).abstain
        except ManifestError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        fusion = Retrieval(answer_weight=answer_weight, lexical_weight=lexical_weight)
        dense = FaqSearch(items, encoder, fusion)
        source = "manifest"
        if stored is None or stored.faq_hash != digest or stored.retrieval != fusion.describe():
            _, stored = calibrate_model(dense, dev, off_dev)
            source = "calibrated now on dev (none stored for this FAQ and these weights)"
        rule = rule_for(dense, stored)
        ab = abstain_figures(dense, rule, off_test, test)
        kinds = ", ".join(f"{k} {d}/{t}" for k, (d, t) in sorted(ab.by_kind.items()))
        typer.echo(
            f"\n## {name} ({model_dir}): min_score {stored.min_score:.4f}, off-topic weight "
            f"{stored.offtopic_weight} ({source}); score: {fusion.describe()}\n"
            f"abstain: off-topic test split abstained {ab.offtopic_abstained:.1f}% of "
            f"{ab.offtopic_test} (target >= 90%); shopper test split wrongly refused "
            f"{ab.shopper_refused:.1f}% of {ab.shopper_test} (target <= 3%)\n"
            f"  abstained by kind: {kinds}"
        )
        typer.echo(
            "| set | queries | 3 distinct topics, grouping on | off | topic in top 3 on | off "
            "| top answer in the query's language | in the requested (de) |"
        )
        typer.echo("|---|---|---|---|---|---|---|---|")
        sets = (
            ("shopper test", [q.query for q in test], [q.topic for q in test],
             [[q.lang] for q in test]),
            ("README examples", [e.query for e in ex], [e.topic for e in ex],
             [list(e.langs) for e in ex]),
        )  # fmt: skip
        for label, qs, topics, langs in sets:
            g = grouping_figures(dense, qs, topics, langs, detector)
            typer.echo(
                f"| {label} | {g.queries} | {g.pct(g.distinct3_on):.1f}% | "
                f"{g.pct(g.distinct3_off):.1f}% | {g.pct(g.top3_on):.1f}% | "
                f"{g.pct(g.top3_off):.1f}% | {g.pct(g.lang_follows):.1f}% | "
                f"{g.pct(g.lang_requested):.1f}% |"
            )
        typer.echo(
            "\nanswer and lexical parts on/off (grouping on, top 3; topic top 1 / in top 3):\n"
            "| score | shopper dev top 1 | top 3 | shopper test top 1 | top 3 "
            "| README examples top 1 | top 3 |\n|---|---|---|---|---|---|---|"
        )
        # Each set encoded once for every weighting below.
        query_sets = {
            "dev": QuerySet.encode(encoder, [q.query for q in dev], [q.topic for q in dev]),
            "test": QuerySet.encode(encoder, [q.query for q in test], [q.topic for q in test]),
            "examples": QuerySet.encode(encoder, [e.query for e in ex], [e.topic for e in ex]),
        }
        for label, parts in retrieval_variants(fusion):
            fig = {
                name: retrieval_figures(dense.with_retrieval(parts), queries)
                for name, queries in query_sets.items()
            }
            typer.echo(
                f"| {label} | "
                + " | ".join(f"{fig[n][0]:.1f}% | {fig[n][1]:.1f}%" for n in fig)
                + " |"
            )
        if grid:
            typer.echo("\nfusion weights on the shopper dev split (topic top 1 / in top 3):")
            for a in FUSION_GRID_ANSWER:
                cells = []
                for lex in FUSION_GRID_LEXICAL:
                    parts = Retrieval(answer_weight=a, lexical_weight=lex)
                    first, top3 = retrieval_figures(dense.with_retrieval(parts), query_sets["dev"])
                    cells.append(f"lexical {lex:g}: {first:.1f}/{top3:.1f}")
                typer.echo(f"  answer {a:g}: " + ", ".join(cells))
