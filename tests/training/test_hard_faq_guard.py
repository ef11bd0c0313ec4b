"""The hard FAQ's dev and test queries never reach training: the guard, the trainer's data
loading and `faq-model build-data` all refuse them, with the guard's default arguments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_export.cli import cli
from model_export.eval_guard import EvalGuard, EvalLeakError, normalise
from model_export.hard_faq import (
    DEFAULT_DIR,
    DEFAULT_FAQ,
    DEFAULT_QUERIES,
    HardQuery,
    guarded_texts,
    load_queries,
    split,
)
from model_export.shopper_data import Split
from model_export.training.config import config_from_dict
from model_export.training.data import Pair, write_pairs
from model_export.training.trainer import load_training_pairs

LABEL = "How do I return an item?"


@pytest.fixture(scope="module")
def parts() -> dict[Split, list[HardQuery]]:
    return split(load_queries(DEFAULT_QUERIES, faq=DEFAULT_FAQ))


def test_guard_refuses_every_dev_and_test_query(
    parts: dict[Split, list[HardQuery]], tmp_path: Path
) -> None:
    # Default hard_faq_dir: the trainer and the builders never name it.
    guard = EvalGuard.from_sources(
        [tmp_path / "none"], debian_faq_dir=None, shopper_dir=None, mode="drop"
    )
    held = parts["dev"] + parts["test"]
    pairs = [Pair(q.query, LABEL, q.lang) for q in parts["train"] + held]
    # A near-duplicate of a test query (case, punctuation, spacing), as query and as label.
    test_q = parts["test"][0].query
    pairs += [Pair(f"  {test_q.upper()} ?!", LABEL), Pair("unrelated", f"{test_q}.")]
    kept, dropped = guard.filter(pairs)
    assert dropped == len(held) + 2
    assert {p.query for p in kept} == {q.query for q in parts["train"]}


def test_guard_reads_both_the_recomputed_split_and_the_committed_files(
    parts: dict[Split, list[HardQuery]], tmp_path: Path
) -> None:
    """A stale split file or a query added without re-splitting must not open a leak."""
    held = {normalise(q.query) for q in parts["dev"] + parts["test"]}
    only_files = tmp_path / "files"
    only_files.mkdir()
    for name in ("dev", "test"):
        shutil.copy(DEFAULT_DIR / f"{name}.jsonl", only_files)
    only_queries = tmp_path / "queries"
    only_queries.mkdir()
    shutil.copy(DEFAULT_QUERIES, only_queries)
    for d in (only_files, only_queries):
        assert {normalise(t) for t in guarded_texts(d)} == held, d
    assert guarded_texts(tmp_path / "missing") == []


def test_a_hard_test_query_stops_training(
    parts: dict[Split, list[HardQuery]], tmp_path: Path
) -> None:
    """The trainer's own data loading, as `faq-model train` runs it (guard in raise mode)."""
    test_q = parts["test"][0]
    train = [q for q in parts["train"] if q.lang == test_q.lang][:3]
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs([Pair(q.query, LABEL, q.lang) for q in [*train, test_q]], pairs_file)
    data = {
        "train_files": [str(pairs_file)],
        "eval_dirs": [],
        "debian_faq_dir": "",
        "languages": [test_q.lang],
    }
    with pytest.raises(EvalLeakError, match="1 training pairs contain evaluation text"):
        load_training_pairs(config_from_dict({"dev_fraction": 0.0, "data": data}))
    cfg = config_from_dict({"dev_fraction": 0.0, "data": {**data, "guard_mode": "drop"}})
    pairs, summary = load_training_pairs(cfg)
    assert summary.guard_dropped == 1
    assert test_q.query not in {p.query for p in pairs}


def test_build_data_from_the_hard_query_file_keeps_only_train(
    parts: dict[Split, list[HardQuery]], tmp_path: Path
) -> None:
    """Someone feeding the whole query file to the log builder gets the train split only."""
    out = tmp_path / "pairs.jsonl"
    args = ["build-data", "--source", "logs", "--faq", str(DEFAULT_FAQ)]
    args += ["--logs", str(DEFAULT_QUERIES), "--out", str(out), "--eval-dir", str(tmp_path)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["guard_dropped"] == len(parts["dev"]) + len(parts["test"])
    written = {normalise(json.loads(line)["query"]) for line in out.read_text().splitlines()}
    assert written == {normalise(q.query) for q in parts["train"]}
