"""`faq-model eval-seeds`: per run and over several runs of one comparison, on the code-mixed
queries of the shopper FAQ and of both FAQs pooled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model_export.cli import cli
from model_export.evaluation.seeds import SeedsError, seeds_summary
from model_export.shopper_data import load_queries

REPO = Path(__file__).resolve().parents[2]
SHOPPER = (REPO / "data" / "shopper" / "test.jsonl", REPO / "data" / "faq.jsonl")
HARD = (REPO / "data" / "hard_faq" / "test.jsonl", REPO / "data" / "hard_faq" / "faq.jsonl")


def _mixed(queries: Path, faq: Path) -> np.ndarray:
    return np.array([q.kind == "code_mixed" for q in load_queries(queries, faq=faq)])


def _run(tmp: Path, name: str, shop_hits: dict[str, np.ndarray], none_hits: dict[str, np.ndarray]):
    """A run directory whose ranks give these R@1 hits (1 = hit, 2 = miss)."""

    def ranks(hits: np.ndarray) -> list[int]:
        return [1 if h else 2 for h in hits]

    run = tmp / name
    run.mkdir()
    results = {
        "queries": str(SHOPPER[0]),
        "faq": str(SHOPPER[1]),
        "ranks": {"shop": ranks(shop_hits["s"]), "shop_no_cs": ranks(none_hits["s"])},
        "hard_faq": {
            "queries": str(HARD[0]),
            "faq": str(HARD[1]),
            "ranks": {"shop": ranks(shop_hits["h"]), "shop_no_cs": ranks(none_hits["h"])},
        },
    }
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run


def test_each_run_and_the_mean_of_the_runs(tmp_path: Path) -> None:
    s_mixed, h_mixed = _mixed(*SHOPPER), _mixed(*HARD)
    rng = np.random.default_rng(0)
    none = {"s": np.zeros(len(s_mixed), bool), "h": np.zeros(len(h_mixed), bool)}
    # Run 1: CS answers every mixed shopper query; run 2: none of them. Monolingual queries are
    # answered by CS in both, and must not count.
    first = {"s": s_mixed | ~s_mixed, "h": rng.random(len(h_mixed)) < 0.5}
    second = {"s": ~s_mixed, "h": np.zeros(len(h_mixed), bool)}
    runs = [_run(tmp_path, "seed1", first, none), _run(tmp_path, "seed2", second, none)]
    summary = seeds_summary(runs, n_boot=200)
    one, two = (summary["runs"][str(r)] for r in runs)
    assert one["shopper_code_mixed"]["delta"] == pytest.approx(1.0)
    assert two["shopper_code_mixed"]["delta"] == pytest.approx(0.0)
    n_s, n_h = int(s_mixed.sum()), int(h_mixed.sum())
    assert one["shopper_code_mixed"]["n"] == n_s
    pooled_one = (n_s + first["h"][h_mixed].sum()) / (n_s + n_h)
    assert one["pooled_code_mixed"]["delta"] == pytest.approx(pooled_one)
    over = summary["over_runs"]
    assert over["shopper_code_mixed"]["delta"] == pytest.approx(0.5)
    assert over["pooled_code_mixed"]["delta"] == pytest.approx(pooled_one / 2)
    lo, hi = over["shopper_code_mixed"]["ci95"]
    assert lo <= 0.5 <= hi


def test_runs_that_are_not_one_comparison_are_refused(tmp_path: Path) -> None:
    s_mixed, h_mixed = _mixed(*SHOPPER), _mixed(*HARD)
    hits = {"s": s_mixed, "h": h_mixed}
    run = _run(tmp_path, "seed1", hits, hits)
    results = json.loads((run / "results.json").read_text())
    del results["hard_faq"]
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(SeedsError, match="no hard FAQ scored"):
        seeds_summary([run])
    short = _run(tmp_path, "seed2", hits, hits)
    results = json.loads((short / "results.json").read_text())
    results["ranks"]["shop"] = results["ranks"]["shop"][:-1]
    (short / "results.json").write_text(json.dumps(results))
    with pytest.raises(SeedsError, match="ranks do not match"):
        seeds_summary([short])


def test_the_command_names_a_missing_run_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval-seeds", str(tmp_path / "seed9")])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'seed9' / 'results.json'}:" in result.output
    assert "Traceback" not in result.output
