"""`faq-index`: build the FAQ index from a file with the exported encoder."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from index_builder.faq import FaqFileError, read_faq
from index_builder.local_lock import local_writer
from index_builder.manifest import ManifestError
from index_builder.store import FaqIndex, FaqIndexError, open_client

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.callback()
def _root() -> None:
    """Keeps `build` a subcommand even while it is the only one."""


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
    qdrant_path: Annotated[
        Path, typer.Option(envvar="FAQ_QDRANT_PATH", help="Embedded Qdrant data directory.")
    ] = Path("var/qdrant"),
    keep: Annotated[int, typer.Option(help="Collections kept for rollback.")] = 3,
    force: Annotated[bool, typer.Option(help="Rebuild even if nothing changed.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lock_timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for the embedded directory's access lock."),
    ] = 120.0,
) -> None:
    """Embed the FAQ questions into a new collection and move the alias to it."""
    from index_builder.encoder import OnnxEncoder  # onnxruntime import is slow; only here

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        items = read_faq(faq)
        encoder = OnnxEncoder.load(model_dir, variant=variant)
        with ExitStack() as stack:
            if qdrant_url:
                client = open_client(url=qdrant_url, api_key=qdrant_api_key)
                stack.callback(client.close)
            else:
                # Under the directory's access lock, so that a multi-worker service can keep
                # serving (it reads only under the same lock) and reloads after the build.
                client = stack.enter_context(local_writer(qdrant_path, timeout=lock_timeout))
            index = FaqIndex(client, alias=alias, keep=keep)
            info, built = index.build(
                items, encoder, batch_size=batch_size, skip_if_unchanged=not force
            )
    except (FaqFileError, ManifestError, FaqIndexError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    verb = "built" if built else "unchanged"
    typer.echo(
        f"{verb}: alias {info.alias!r} -> {info.collection} ({info.points} entries, {info.model})"
    )


def main() -> None:
    cli()
