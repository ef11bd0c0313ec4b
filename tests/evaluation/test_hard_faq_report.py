"""R@1 per subset of the hard FAQ from a task evaluation's ranks. No model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from model_export.evaluation.hard_faq_report import ReportError, breakdown, main, to_markdown
from model_export.hard_faq import load_queries

ROWS = [
    ("where is my refund", "en", "english", "latn"),
    ("refund kab aayega", "hi", "code_mixed", "latn"),
    ("paisa wapas kab milega", "hi", "monolingual", "latn"),
    ("返金はいつですか", "ja", "monolingual", "jpan"),
    ("refundはいつ", "ja", "code_mixed", "jpan"),
]


def _files(tmp_path: Path, ranks: list[int]) -> tuple[Path, Path]:
    queries = tmp_path / "test.jsonl"
    lines = [
        json.dumps(
            {"query": q, "faq_id": "refund-time", "lang": lang, "kind": kind, "script": script},
            ensure_ascii=False,
        )
        for q, lang, kind, script in ROWS
    ]
    queries.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = tmp_path / "results.json"
    report = {
        "queries": str(queries),
        "queries_sha256": hashlib.sha256(queries.read_bytes()).hexdigest(),
        "ranks": {"base": ranks},
    }
    results.write_text(json.dumps(report), encoding="utf-8")
    return results, queries


def test_subsets_count_rank_one_only(tmp_path: Path) -> None:
    # rank 0 is "not in the top ten", 2 is a near miss: neither counts for R@1.
    results, queries = _files(tmp_path, [1, 1, 0, 2, 1])
    table = breakdown(
        json.loads(results.read_text()),
        load_queries(queries, faq=None),
        queries_bytes=queries.read_bytes(),
    )["base"]
    assert {k: (v["n"], v["r1"]) for k, v in table.items()} == {
        "all": (5, 0.6),
        "code_mixed": (2, 1.0),
        "romanised": (2, 0.5),  # the Hinglish pair; Japanese script is not romanised
        "monolingual": (2, 0.0),
        "english": (1, 1.0),
    }
    lo, hi = table["all"]["r1_ci"]
    assert 0.0 <= lo <= 0.6 <= hi <= 1.0
    assert "| base | 60.0 [" in to_markdown({"base": table})


def test_results_of_another_query_file_are_refused(tmp_path: Path) -> None:
    results, queries = _files(tmp_path, [1, 1, 1, 1, 1])
    changed = queries.read_bytes().replace(b"where is my refund", b"where is my money")
    queries.write_bytes(changed)
    with pytest.raises(ReportError, match="not this query file"):
        breakdown(
            json.loads(results.read_text()),
            load_queries(queries, faq=None),
            queries_bytes=changed,
        )


def test_ranks_must_cover_every_query(tmp_path: Path) -> None:
    results, queries = _files(tmp_path, [1, 1])
    with pytest.raises(ReportError, match="2 ranks for 5 queries"):
        breakdown(
            json.loads(results.read_text()),
            load_queries(queries, faq=None),
            queries_bytes=queries.read_bytes(),
        )


def test_cli_reads_the_query_file_named_in_the_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, _ = _files(tmp_path, [1, 0, 0, 0, 0])
    main([str(results), "--json"])
    assert json.loads(capsys.readouterr().out)["base"]["all"]["r1"] == 0.2
