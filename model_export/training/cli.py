"""Typer commands for training: `train`, `dict-coverage`, `build-data`.

`register(app)` adds them to the project's `faq-model` CLI; `python -m model_export.training.cli`
runs them on their own.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from model_export.dictionaries import coverage, load_dictionary, merge, read_corpus


class Source(StrEnum):
    faq = "faq"
    oscar = "oscar"
    debian_reference = "debian-reference"
    jsonl = "jsonl"


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Annotated[Path, typer.Option("--config", help="TOML or JSON run config")],
        resume: Annotated[
            bool, typer.Option("--resume", help="continue from the last checkpoint")
        ] = False,
        stop_after: Annotated[
            int | None, typer.Option(help="stop after N optimizer steps (with a checkpoint)")
        ] = None,
    ) -> None:
        """Train an encoder (continual pre-training and/or fine-tuning) from one config file."""
        from model_export.training.config import load_config
        from model_export.training.trainer import train

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        report = train(load_config(config), resume=resume, stop_after=stop_after)
        summary = {
            k: report[k] for k in ("name", "status", "device", "autocast", "time_s", "model_dir")
        }
        summary["stages"] = report["stages"]
        typer.echo(json.dumps(summary, indent=2))

    @app.command("dict-coverage")
    def dict_coverage_cmd(
        dict_paths: Annotated[
            list[Path], typer.Option("--dict", help="dictionary file (repeatable)")
        ],
        corpus: Annotated[
            list[Path], typer.Option("--corpus", help="text or JSONL file (repeatable)")
        ],
        fmt: Annotated[str, typer.Option("--format", help="auto|freedict|muse|tsv")] = "auto",
        top: Annotated[int, typer.Option(help="how many uncovered words to list")] = 20,
    ) -> None:
        """Report how much of a corpus the (merged) dictionaries cover."""
        if fmt not in ("auto", "freedict", "muse", "tsv"):
            raise typer.BadParameter(f"unknown format {fmt!r}")
        dicts = [load_dictionary(p, fmt, tgt_lang="tgt") for p in dict_paths]  # type: ignore[arg-type]
        merged = merge(dicts)
        texts = [t for c in corpus for t in read_corpus(c)]
        report = coverage(merged, texts, top=top).as_dict()
        report["entries"] = len(merged)
        report["dictionaries"] = [str(p) for p in dict_paths]
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))

    @app.command("build-data")
    def build_data_cmd(
        source: Annotated[Source, typer.Option(help="which builder")],
        input_path: Annotated[
            Path, typer.Option("--input", help="FAQ file / oscar wheel or dir / English HTML dir")
        ],
        out: Annotated[Path, typer.Option(help="output JSONL of pairs")],
        lang: Annotated[
            list[str] | None, typer.Option(help="languages to keep (repeatable)")
        ] = None,
        other: Annotated[
            Path | None, typer.Option(help="debian-reference: translated HTML dir")
        ] = None,
        eval_dir: Annotated[
            list[Path] | None, typer.Option(help="evaluation sets to guard against")
        ] = None,
        guard: Annotated[str, typer.Option(help="raise|drop")] = "drop",
    ) -> None:
        """Build (query, label) pairs from an installable source; eval texts are refused."""
        from model_export.eval_guard import EvalGuard
        from model_export.training.config import DEFAULT_LANGUAGES
        from model_export.training.data import (
            Pair,
            aligned_paragraph_pairs,
            faq_pairs,
            oscar_pairs,
            read_pairs,
            write_pairs,
        )

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        langs = lang or list(DEFAULT_LANGUAGES)
        pairs: list[Pair]
        if source is Source.faq:
            pairs = faq_pairs(input_path)
        elif source is Source.oscar:
            pairs = oscar_pairs(input_path, langs)
        elif source is Source.debian_reference:
            if other is None or len(langs) != 1:
                raise typer.BadParameter(
                    "debian-reference needs --other DIR and exactly one --lang"
                )
            pairs = aligned_paragraph_pairs(input_path, other, langs[0])
        else:
            pairs = read_pairs(input_path)
        if guard not in ("raise", "drop"):
            raise typer.BadParameter("--guard is raise or drop")
        g = EvalGuard.from_sources(eval_dir or [Path("artifacts/eval")], mode=guard)  # type: ignore[arg-type]
        kept, dropped = g.filter(pairs)
        n = write_pairs(kept, out)
        typer.echo(json.dumps({"written": n, "guard_dropped": dropped, "out": str(out)}))


if __name__ == "__main__":
    _app = typer.Typer(no_args_is_help=True)
    register(_app)
    _app()
