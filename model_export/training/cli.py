"""Typer commands for training: `train`, `dict-coverage`, `build-data`.

`register(app)` adds them to the project's `faq-model` CLI; `python -m model_export.training.cli`
runs them on their own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from model_export.training.config import CodeSwitchConfig

T = TypeVar("T")


def _fail(message: str) -> NoReturn:
    """A user error: one line on stderr, exit 2, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _codeswitch_config(path: Path | None) -> CodeSwitchConfig:
    from model_export.training.config import CodeSwitchConfig, ConfigError, load_config

    if path is None:
        return CodeSwitchConfig()
    try:
        return load_config(path).codeswitch
    except ConfigError as exc:  # it names the file
        _fail(str(exc))


def _load(fn: Callable[..., T], *args: Any) -> T:
    """Run a dictionary loader, turning a missing file or bad setting into a CLI error."""
    from model_export.training.switching import DictionaryConfigError

    try:
        return fn(*args)
    except DictionaryConfigError as exc:
        _fail(str(exc))


def _log_pairs(
    faq: Path | None,
    logs: Path | None,
    db: str | None,
    with_answers: bool,
    min_clicks: int,
    max_unknown: float,
    detect_lang: list[str] | None,
) -> tuple[list[Any], dict[str, Any]]:
    """`--source logs` (a log file) or `querylog` (the service's query log, `db`): the pairs and
    the log summary; bad rows, files and databases exit 2 with what is wrong."""
    from model_export.training.logs import (
        DEFAULT_DETECT_LANGUAGES,
        LogError,
        UnknownIdsError,
        pairs_from_rows,
        querylog_rows,
        read_log,
    )

    if faq is None or (logs is None) == (db is None):
        raise typer.BadParameter(
            "--source logs needs --faq FILE and --logs FILE; querylog --faq FILE and --db URL"
        )
    try:
        pairs, summary = pairs_from_rows(
            read_log(logs) if logs is not None else querylog_rows(str(db)),
            faq,
            str(logs or db),
            source="logs" if logs is not None else "querylog",
            with_answers=with_answers,
            min_clicks=min_clicks,
            max_unknown=max_unknown,
            detect_languages=detect_lang or DEFAULT_DETECT_LANGUAGES,
        )
    except (LogError, UnknownIdsError) as exc:
        _fail(str(exc))
    except ValueError as exc:  # the detector: an unsupported --detect-lang
        _fail(f"--detect-lang: {exc}")
    return pairs, summary.as_dict()


class Source(StrEnum):
    faq = "faq"
    oscar = "oscar"
    debian_reference = "debian-reference"
    jsonl = "jsonl"
    logs = "logs"
    querylog = "querylog"
    faq_task = "faq-task"


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
        seed: Annotated[
            int | None, typer.Option(help="the config's seed replaced (another run of a recipe)")
        ] = None,
        output_dir: Annotated[
            Path | None, typer.Option(help="the config's output_dir replaced")
        ] = None,
    ) -> None:
        """Train an encoder (continual pre-training and/or fine-tuning) from one config file."""
        from dataclasses import replace

        from model_export.eval_guard import MissingEvalSetsError
        from model_export.training.config import ConfigError, load_config
        from model_export.training.trainer import train

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            run = load_config(config)
        except ConfigError as exc:  # it names the file
            _fail(str(exc))
        if seed is not None:
            run = replace(run, seed=seed)
        if output_dir is not None:
            run = replace(run, output_dir=str(output_dir))
        try:
            report = train(run, resume=resume, stop_after=stop_after)
        except MissingEvalSetsError as exc:
            _fail(f"{config}: {exc}")
        summary = {
            k: report[k] for k in ("name", "status", "device", "autocast", "time_s", "model_dir")
        }
        summary["stages"] = report["stages"]
        summary["best"] = report.get("best")
        typer.echo(json.dumps(summary, indent=2))

    @app.command("codeswitch")
    def codeswitch_cmd(
        lang: Annotated[str, typer.Option(help="language of the text (ISO 639-1: de, en, th)")],
        text: Annotated[str, typer.Option(help="the text to switch")],
        seed: Annotated[int, typer.Option(help="sampler seed")] = 0,
        policy: Annotated[
            str | None, typer.Option(help="official|rate (default: the config's)")
        ] = None,
        rate: Annotated[
            float | None, typer.Option(min=0.0, max=1.0, help="share of switchable words")
        ] = None,
        to: Annotated[
            str | None,
            typer.Option("--to", help="English text: the target language (default: any)"),
        ] = None,
        config: Annotated[
            Path | None, typer.Option(help="run config whose [codeswitch] to use")
        ] = None,
        script: Annotated[
            str | None,
            typer.Option(
                help="latn: Hindi (bn, mr) in the informal Latin spelling shoppers type; the "
                "text and the dictionary's side of that language are romanised"
            ),
        ] = None,
    ) -> None:
        """Switch one text as training would, and list each swap (word -> translation)."""
        from model_export.codeswitch import ENGLISH
        from model_export.training.switching import build_switcher, load_tables

        cs = _codeswitch_config(config)
        if script is not None:
            from model_export.romanise import LATIN, romanise, supported

            indic = lang if lang != ENGLISH else to
            if script != LATIN or indic is None or not supported(indic):
                _fail(f"--script {script}: only 'latn' for hi, bn or mr (--lang, or --to)")
            cs.romanise = [*cs.romanise, indic]
            if indic not in cs.dictionaries:
                from model_export.lexicons.sources import BEFORE
                from model_export.training.config import LanguageDictionaries

                cs.dictionaries[indic] = LanguageDictionaries(from_en=list(BEFORE.get(indic, [])))
            if lang == indic:
                # The romanised table's headwords are Latin: the text must be too.
                text = romanise(text, indic)
        if policy is not None:
            if policy not in ("official", "rate"):
                _fail(f"--policy must be official or rate, got {policy!r}")
            cs.policy = policy  # type: ignore[assignment]
        if rate is not None:
            cs.rate = rate
        # English text is switched towards --to, else towards any configured language.
        wanted = [lang] if lang != ENGLISH else ([to] if to else list(cs.languages))
        unknown = [w for w in wanted if w not in cs.dictionaries]
        if unknown or not wanted:
            _fail(
                f"no dictionary for language {', '.join(unknown) or lang!r}: set "
                f"codeswitch.dictionaries.{(unknown or [lang])[0]}.to_en / from_en in the "
                "config (--config)"
            )
        tables = _load(load_tables, cs, wanted)
        direction = "from_en" if lang == ENGLISH else "to_en"
        if not any(d == direction for _, d in tables.tables):
            _fail(
                f"no {direction} dictionary for {wanted[0]!r}: set "
                f"codeswitch.dictionaries.{wanted[0]}.{direction} (or reverse_fallback = true)"
            )
        switcher = build_switcher(cs, tables, seed=seed)
        assert switcher is not None
        result = switcher.switch(text, lang, partner=to, salt=0)
        typer.echo(result.text)
        for r in result.replacements:
            table = tables.tables[(r.lang if direction == "from_en" else lang, direction)]
            how = "reversed " if table.reversed else ""
            src, tgt = (lang, ENGLISH) if direction == "to_en" else (ENGLISH, r.lang)
            typer.echo(f"  {r.source} -> {r.target}  [{src}->{tgt}, {how}{', '.join(table.files)}]")
        typer.echo(
            f"  ({len(result.replacements)} of {result.switchable} switchable units, "
            f"{result.words} words, policy {cs.policy})"
        )

    @app.command("dict-coverage")
    def dict_coverage_cmd(
        config: Annotated[
            Path | None, typer.Option(help="run config: its dictionaries and training files")
        ] = None,
        corpus: Annotated[
            list[Path] | None,
            typer.Option("--corpus", help="pairs JSONL instead of the config's train_files"),
        ] = None,
        lang: Annotated[
            list[str] | None, typer.Option(help="only these languages (repeatable)")
        ] = None,
        top: Annotated[int, typer.Option(help="how many uncovered words to list")] = 10,
        shop: Annotated[
            bool,
            typer.Option(
                "--shop",
                help="the English FAQ's content words with an in-domain translation, per "
                "language and direction: FreeDict (before), all lexicons, + in-domain ranking, "
                "phrases and romanisation (after)",
            ),
        ] = False,
        faq: Annotated[Path, typer.Option(help="--shop: the FAQ (JSONL)")] = Path("data/faq.jsonl"),
        shop_text: Annotated[
            list[Path] | None,
            typer.Option(
                help="--shop: the shop's text (FAQ, shopper log train split; repeatable); "
                "the eval guard drops dev/test texts"
            ),
        ] = None,
        markdown: Annotated[bool, typer.Option(help="--shop: a table instead of JSON")] = False,
    ) -> None:
        """Per language and direction: entries loaded, dropped by cleaning (and why), coverage."""
        from model_export.codeswitch import ENGLISH
        from model_export.dictionaries import coverage
        from model_export.training.data import read_pairs
        from model_export.training.switching import load_tables

        if shop:
            from model_export.lexicons.shop_coverage import measure
            from model_export.lexicons.shop_coverage import table as coverage_table

            shop_files = [str(p) for p in (shop_text or [faq, Path("data/shopper/train.jsonl")])]
            langs = lang or ["de", "fr", "es", "pt", "id", "ja", "zh", "it", "nl", "tr", "hi"]
            shop_report = _load(measure, langs, faq, shop_files)
            typer.echo(
                coverage_table(shop_report)
                if markdown
                else json.dumps(shop_report, indent=2, ensure_ascii=False)
            )
            return
        cs = _codeswitch_config(config)
        files = list(corpus or [])
        if config is not None and not files:
            from model_export.training.config import load_config

            files = [Path(f) for f in load_config(config).data.train_files]
        langs = lang or list(cs.languages)
        tables = _load(load_tables, cs, langs)
        texts: dict[str, list[str]] = {}
        for f in files:
            try:
                pairs = read_pairs(f)
            except (OSError, ValueError) as exc:
                _fail(f"{f}: {exc}")
            for p in pairs:
                texts.setdefault(p.lang, []).append(p.query)
                texts.setdefault(p.label_lang, []).append(p.label)
        report = tables.report()
        for (code, direction), table in sorted(tables.tables.items()):
            source_lang = code if direction == "to_en" else ENGLISH
            corpus_texts = texts.get(source_lang, [])
            if corpus_texts:
                cov = coverage(table.dictionary, corpus_texts, top=top, lang=source_lang)
                report[code][direction]["coverage"] = cov.as_dict()
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))

    @app.command("build-data")
    def build_data_cmd(
        source: Annotated[Source, typer.Option(help="which builder")],
        out: Annotated[Path, typer.Option(help="output JSONL of pairs")],
        input_path: Annotated[
            Path | None,
            typer.Option(
                "--input", help="FAQ file / oscar wheel or dir / English HTML dir / pairs JSONL"
            ),
        ] = None,
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
        allow_split: Annotated[
            list[str] | None,
            typer.Option(
                help="let this shopper split past the guard: only dev (make demo-loop, where "
                "the dev queries are the replayed traffic); test is measured and never is"
            ),
        ] = None,
        faq: Annotated[
            Path | None, typer.Option(help="logs: the FAQ (JSONL/CSV) whose ids the log names")
        ] = None,
        logs: Annotated[
            Path | None,
            typer.Option(help="logs: CSV or JSONL with query, faq_id[, lang, clicks]"),
        ] = None,
        db: Annotated[
            str | None,
            typer.Option(
                help="querylog: the service's FAQ_QUERY_LOG database URL (sqlite:///var/"
                "querylog.db, postgresql://...): its clicked and voted-helpful searches"
            ),
        ] = None,
        with_answers: Annotated[
            bool, typer.Option(help="logs, querylog: also pair each query with the FAQ answer")
        ] = False,
        min_clicks: Annotated[
            int, typer.Option(min=0, help="logs: drop rows with fewer clicks (0 keeps all)")
        ] = 1,
        max_unknown: Annotated[
            float,
            typer.Option(
                min=0.0, max=1.0, help="logs: largest share of rows with an unknown faq_id"
            ),
        ] = 0.05,
        detect_lang: Annotated[
            list[str] | None,
            typer.Option(
                help="logs: languages the detector may answer for rows without lang "
                "(repeatable; default: the FAQ's and the shopper log's languages)"
            ),
        ] = None,
    ) -> None:
        """Build (query, label) pairs from an installable source or a shop's query log.

        Evaluation texts (including the shopper log's dev/test queries) are refused by the guard.
        """
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
        if guard not in ("raise", "drop"):
            raise typer.BadParameter("--guard is raise or drop")
        langs = lang or list(DEFAULT_LANGUAGES)
        pairs: list[Pair]
        report: dict[str, Any] = {}
        if source is Source.logs or source is Source.querylog:
            pairs, report = _log_pairs(
                faq,
                logs if source is Source.logs else None,
                db if source is Source.querylog else None,
                with_answers,
                min_clicks,
                max_unknown,
                detect_lang,
            )
        elif input_path is None:
            raise typer.BadParameter(f"--source {source.value} needs --input")
        elif source is Source.faq:
            pairs = faq_pairs(input_path)
        elif source is Source.faq_task:
            from model_export.training.logs import LogError
            from model_export.training.shop_data import faq_task_pairs

            try:
                pairs = faq_task_pairs(input_path)
            except LogError as exc:
                _fail(str(exc))
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
        try:
            g = EvalGuard.from_sources(
                eval_dir or [Path("artifacts/eval")],
                allow_shopper_splits=allow_split or (),
                mode=guard,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--allow-split") from None
        kept, dropped = g.filter(pairs)
        n = write_pairs(kept, out)
        summary = {"written": n, "guard_dropped": dropped, "out": str(out)}
        typer.echo(json.dumps({**report, **summary}, ensure_ascii=False))

    @app.command("mine-negatives")
    def mine_negatives_cmd(
        pairs_path: Annotated[Path, typer.Option("--pairs", help="pairs JSONL (with topics)")],
        faq: Annotated[Path, typer.Option(help="the FAQ whose questions are the candidates")],
        model: Annotated[Path, typer.Option(help="exported ONNX directory of the base model")],
        out: Annotated[Path, typer.Option(help="output pairs JSONL")],
    ) -> None:
        """Give each pair with a topic the base model's top FAQ question of another topic."""
        from model_export.training.data import read_pairs, write_pairs
        from model_export.training.logs import LogError
        from model_export.training.shop_data import mine_negatives

        if not (model / "manifest.json").is_file():
            _fail(f"{model}: no exported model (make model builds the base)")
        try:
            pairs = read_pairs(pairs_path)
            mined, n = mine_negatives(pairs, faq, model)
        except FileNotFoundError as exc:
            _fail(f"{exc.filename}: no such file")
        except (LogError, ValueError) as exc:
            _fail(str(exc))
        write_pairs(mined, out)
        typer.echo(json.dumps({"pairs": len(mined), "with_negative": n, "out": str(out)}))


if __name__ == "__main__":
    _app = typer.Typer(no_args_is_help=True)
    register(_app)
    _app()
