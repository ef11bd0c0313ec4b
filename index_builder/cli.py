"""`faq-index`: build the FAQ index from a file with the exported encoder.

Exit codes: 0 done; 2 bad input (a FAQ or golden queries file, a model directory, an index that
cannot be written); 3 the new collection failed the quality gate (`build --golden`):
it is deleted and the alias stays where it was, so a pipeline can tell "fix the input" from
"the model got worse".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from index_builder.faq import FaqFileError, read_faq
from index_builder.manifest import ManifestError
from index_builder.quality_gate import (
    GateReport,
    GoldenFileError,
    GoldenResult,
    QualityGate,
    QualityGateError,
    load_golden,
)
from index_builder.store import CollectionLayout, FaqIndexError, open_store

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
            lock_timeout_s=lock_timeout,
        )
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


def main() -> None:
    cli()
