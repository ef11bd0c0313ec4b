"""`faq-model eval-seeds`: one comparison trained again with other seeds, read as a whole.

Each run directory holds the `results.json` of `faq-model eval` with `shop` and `shop_no_cs`
scored on the same test queries (`make cs-without-mixed-log CS_SEED=N` writes one per seed).
Per run: `shop - shop_no_cs` R@1 on the shopper FAQ's code-mixed queries and on the code-mixed
queries of both FAQs pooled (the `codeswitch` object's d), with the paired bootstrap interval
every comparison here uses. Over the runs: each query's difference averaged over the runs, then
the same test, so a gain that holds in one run only is averaged down. Its interval covers the
sampling of queries given these runs, not the spread of further seeds: the per-run rows show
that spread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from numpy.typing import NDArray

from model_export.evaluation.codeswitch_summary import (
    SHOP,
    SHOP_NO_CS,
    FaqScores,
    pooled,
    read_scripts,
)
from model_export.evaluation.metrics import paired_test
from model_export.shopper_data import ShopperQuery, load_queries

RESULTS = "results.json"
# Which queries each figure pools: the shopper FAQ's, and both FAQs' (the `codeswitch` d).
SETS = ("shopper_code_mixed", "pooled_code_mixed")
# A test split's queries and scripts, read once for every run that scored it.
_Split = tuple[list[ShopperQuery], list[str | None]]


class SeedsError(ValueError):
    """A run directory that cannot be read as one run of the comparison."""


def _faq_scores(
    name: str, scored: dict[str, Any], path: Path, splits: dict[tuple[str, str], _Split]
) -> FaqScores:
    """One FAQ of a run's results as `FaqScores`: R@1 per query of shop_no_cs and shop."""
    key = (str(scored["queries"]), str(scored["faq"]))
    if key not in splits:
        queries = load_queries(key[0], faq=key[1])
        splits[key] = (queries, read_scripts(Path(key[0])))
    queries, scripts = splits[key]
    ranks = scored["ranks"]
    missing = {SHOP, SHOP_NO_CS} - set(ranks)
    if missing:
        raise SeedsError(f"{path}: {sorted(missing)} not scored on {key[0]}")
    if any(len(ranks[m]) != len(queries) for m in (SHOP, SHOP_NO_CS)):
        raise SeedsError(f"{path}: ranks do not match the queries of {key[0]}")
    r1 = {m: (np.asarray(ranks[m]) == 1).astype(np.float64) for m in (SHOP_NO_CS, SHOP)}
    return FaqScores(name, queries, scripts, r1)


def run_hits(
    run_dir: Path, splits: dict[tuple[str, str], _Split] | None = None
) -> dict[str, dict[str, NDArray[np.float64]]]:
    """R@1 per code-mixed query of one run, by query set and model (shop_no_cs, shop)."""
    path = run_dir / RESULTS
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SeedsError(f"{path}: {exc}") from None
    hard = results.get("hard_faq")
    if hard is None:
        raise SeedsError(f"{path}: no hard FAQ scored (run `faq-model eval` with --hard-faq)")
    splits = {} if splits is None else splits
    shopper = _faq_scores("shopper", results, path, splits)
    both = [shopper, _faq_scores("hard_faq", hard, path, splits)]
    out: dict[str, dict[str, NDArray[np.float64]]] = {}
    for name, faqs in zip(SETS, ([shopper], both), strict=True):
        hits = {m: pooled(faqs, m, FaqScores.code_mixed) for m in (SHOP_NO_CS, SHOP)}
        out[name] = {m: v if v is not None else np.empty(0) for m, v in hits.items()}
    return out


def _compare(a: NDArray[np.float64], b: NDArray[np.float64], n_boot: int) -> dict[str, Any]:
    res = paired_test(a, b, n_boot=n_boot)
    return {
        "n": res.n,
        SHOP_NO_CS: float(a.mean()),
        SHOP: float(b.mean()),
        "delta": res.delta,
        "ci95": [res.ci_low, res.ci_high],
    }


def seeds_summary(run_dirs: Sequence[Path], *, n_boot: int = 1000) -> dict[str, Any]:
    """Per run and over the runs: shop - shop_no_cs on each query set."""
    if not run_dirs:
        raise SeedsError("no run directories given")
    splits: dict[tuple[str, str], _Split] = {}
    runs = [run_hits(d, splits) for d in run_dirs]
    out: dict[str, Any] = {"runs": {}, "over_runs": {}}
    for run_dir, hits in zip(run_dirs, runs, strict=True):
        out["runs"][str(run_dir)] = {
            s: _compare(hits[s][SHOP_NO_CS], hits[s][SHOP], n_boot) for s in SETS
        }
    for s in SETS:
        if len({len(h[s][SHOP]) for h in runs}) != 1:
            raise SeedsError(f"the runs scored different {s} queries: not one comparison")
        a = np.mean([h[s][SHOP_NO_CS] for h in runs], axis=0)
        b = np.mean([h[s][SHOP] for h in runs], axis=0)
        out["over_runs"][s] = {"runs": len(runs), **_compare(a, b, n_boot)}
    return out


def markdown(summary: dict[str, Any]) -> str:
    def row(name: str, cells: dict[str, Any]) -> str:
        figures = []
        for s in SETS:
            c = cells[s]
            lo, hi = c["ci95"]
            figures.append(
                f"{c[SHOP_NO_CS]:.3f} | {c[SHOP]:.3f} | "
                f"**{100 * c['delta']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]**"
            )
        return f"| {name} | " + " | ".join(figures) + " |"

    n = summary["over_runs"]
    lines = [
        f"| run | shopper code-mixed ({n[SETS[0]]['n']}): none | CS | CS - none [95% CI] "
        f"| both FAQs' code-mixed ({n[SETS[1]]['n']}): none | CS | CS - none [95% CI] |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row(Path(name).name, cells) for name, cells in summary["runs"].items()]
    runs = n[SETS[0]]["runs"]
    lines.append(row(f"mean of {runs} runs" if runs > 1 else "(one run)", summary["over_runs"]))
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    def fail(message: str) -> NoReturn:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    @app.command("eval-seeds")
    def eval_seeds(
        runs: Annotated[
            list[Path], typer.Argument(help="run directories, each with a results.json")
        ],
        as_markdown: Annotated[
            bool, typer.Option("--markdown", help="a table instead of JSON")
        ] = False,
        n_boot: Annotated[int, typer.Option(help="bootstrap resamples")] = 1000,
    ) -> None:
        """shop - shop_no_cs on code-mixed queries, per run and over several seeds' runs."""
        try:
            summary = seeds_summary(runs, n_boot=n_boot)
        except (SeedsError, ValueError) as exc:  # a bad query file names its line too
            fail(str(exc))
        typer.echo(markdown(summary) if as_markdown else json.dumps(summary, indent=2))
