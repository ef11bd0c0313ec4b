"""docs/benchmarks.md and the README's figures are what tools/bench_docs.py makes of the
result files now: a new result file without `python -m tools.bench_docs`, or a figure edited
by hand, shows here."""

from __future__ import annotations

import json

from tools.bench_docs import (
    EVAL_SUMMARY,
    PAGE,
    README,
    Json,
    Result,
    figures_table,
    load_results,
    render_page,
)
from tools.docgen import replace_between


def _inputs() -> tuple[dict[str, Result], Json | None]:
    summary = json.loads(EVAL_SUMMARY.read_text("utf-8")) if EVAL_SUMMARY.exists() else None
    return load_results(), summary


def test_benchmarks_page_is_generated_from_the_result_files() -> None:
    results, summary = _inputs()
    assert PAGE.read_text(encoding="utf-8") == render_page(results, summary), (
        "docs/benchmarks.md is stale: run `python -m tools.bench_docs`"
    )


def test_readme_figures_are_generated_from_the_result_files() -> None:
    results, summary = _inputs()
    readme = README.read_text(encoding="utf-8")
    table = figures_table(results, summary)
    assert readme == replace_between(readme, "figures", table), (
        "README.md's figures are stale: run `python -m tools.bench_docs`"
    )
