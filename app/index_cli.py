"""`faq-index build`: build the index from a FAQ file with the served model, as the service
would (its settings: FAQ_* variables and .env, the same class as `faq-serve`, so the model,
the store, the fusion weights and the golden queries are the ones the service uses).

Exit codes: 0 done; 2 bad input (a setting, a FAQ or golden queries file, a model directory,
an index that cannot be written); 3 the new collection failed the quality gate: it is deleted
and the alias stays where it was, so a pipeline can tell "fix the input" from "the model got
worse".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from app.cli import load_settings
from app.services.index_guard import open_settings_store
from app.services.reindex import reindex_annotator
from index_builder.faq import FaqFileError, read_faq
from index_builder.indexing.faq_calibration import CollectionCalibration
from index_builder.indexing.quality_gate import (
    GateReport,
    GoldenFileError,
    QualityGate,
    QualityGateError,
    load_golden,
)
from index_builder.model.manifest import ManifestError
from index_builder.store import FaqIndexError

GATE_FAILED = 3

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.callback()
def _root() -> None:
    """Keeps `faq-index build` a subcommand however many commands there are."""


def _gate_failed(message: str, report: GateReport) -> typer.Exit:
    """Prints `message` and each failed golden query; the exit to raise."""
    typer.echo(f"error: {message}:", err=True)
    for r in report.failures():
        got = ", ".join(r.top_ids) or "nothing"
        typer.echo(f"  {r.query!r}: expected {r.expected_id} in top {r.top_k}, got {got}", err=True)
    return typer.Exit(GATE_FAILED)


@cli.command()
def build(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv).")],
    model_dir: Annotated[Path | None, typer.Option(help="FAQ_MODEL_DIR for this run.")] = None,
    variant: Annotated[str | None, typer.Option(help="FAQ_MODEL_VARIANT for this run.")] = None,
    index_path: Annotated[Path | None, typer.Option(help="FAQ_INDEX_PATH for this run.")] = None,
    golden: Annotated[
        Path | None,
        typer.Option(
            help="FAQ_GOLDEN_QUERIES for this run: queries the new collection must pass before "
            "the alias moves; exit 3 if it does not."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if nothing changed.")] = False,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the embedded store's write lock.")
    ] = 120.0,
) -> None:
    """Embed the FAQ into a new collection and move the alias to it."""
    from index_builder.model.encoder import OnnxEncoder  # onnxruntime import is slow; only here

    given: dict[str, object] = {"model_dir": model_dir, "model_variant": variant}
    given |= {"index_path": index_path, "golden_queries": golden}
    settings = load_settings({k: v for k, v in given.items() if v is not None}, prog="faq-index")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report: GateReport | None = None
    previous: str | None = None
    attempted: str | None = None
    try:
        items = read_faq(faq)
        # Before the model loads: a bad golden file costs nothing and changes nothing.
        queries = load_golden(settings.golden_queries) if settings.golden_queries else None
        encoder = OnnxEncoder.load(settings.model_dir, variant=settings.model_variant)
        index = open_settings_store(settings, lock_timeout_s=lock_timeout)
        try:
            gate = QualityGate(queries, encoder, settings.golden_top_k) if queries else None
            previous = index.current_collection()

            def validate(collection: str) -> None:
                nonlocal report, attempted
                assert gate is not None
                attempted = collection
                report = gate.check(index, collection)
                if not report.passed:
                    raise QualityGateError(report)

            info, built = index.build(
                items,
                encoder,
                skip_if_unchanged=not force,
                validate=validate if gate else None,
                # The abstain threshold picked for this FAQ, in the new collection's metadata.
                annotate=reindex_annotator(settings, encoder, index, items),
            )
            if gate is not None and not built:
                # Nothing was built (same FAQ, same model), so the gate answers for the live
                # collection: exit 0 always means the alias is on a collection that passes.
                report = gate.check(index, info.collection)
        finally:
            index.close()
    except QualityGateError as exc:
        message = (
            f"{exc.report.failed} of {exc.report.total} golden queries failed on {attempted}; it "
            f"is deleted and alias {settings.collection_alias!r} stays on {previous or 'nothing'}"
        )
        raise _gate_failed(message, exc.report) from None
    except (FaqFileError, ManifestError, FaqIndexError, GoldenFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if report is not None:
        if not report.passed:
            message = (
                f"nothing was built (FAQ and model unchanged) and the live {info.collection} "
                f"fails {report.failed} of {report.total} golden queries"
            )
            raise _gate_failed(message, report)
        typer.echo(
            f"quality gate: {report.total - report.failed}/{report.total} golden queries passed"
        )
    verb = "built" if built else "unchanged"
    typer.echo(
        f"{verb}: alias {info.alias!r} -> {info.collection} ({info.points} entries, {info.model})"
    )
    picked = CollectionCalibration.from_meta(info.abstain)
    if picked is not None:
        typer.echo(f"{picked.describe()} (docs/your-faq.md)")


def main() -> None:
    cli()
