"""bench-peer and bench-100k reports: ratios, the issue's targets, the markdown table."""

from __future__ import annotations

from typing import Any

from tools.bench_100k import render_markdown as render_100k
from tools.bench_100k import scale_checks
from tools.bench_peer import (
    checks,
    cosine,
    inherited_settings,
    peer_log_notes,
    ratios,
    render_markdown,
)


def level(c: int, rps: float, p50: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {
        "concurrency": c,
        "req_per_s": rps,
        "latency_ms": {"p50": p50, "p90": p50 * 1.5, "p99": p99, "mean": p50, "max": p99},
        "errors": errors,
        "server_cpu_s": 10.0,
        "server_cpu_ms_per_request": 2.0,
    }


PEER = [level(1, 100.0, 10.0, 20.0), level(32, 500.0, 60.0, 200.0)]
OURS = [level(1, 250.0, 4.0, 8.0), level(32, 650.0, 45.0, 90.0), level(64, 600.0, 90.0, 150.0)]


def variant(ours: list[dict[str, Any]] = OURS, raw_p50: float = 3.5) -> dict[str, Any]:
    return {
        "sides": {
            "peer": {
                "system": "infinity-emb 0.0.78 (int8)",
                "route": "/embeddings",
                "levels": PEER,
                "notes": ["peer note"],
            },
            "ours": {"system": "faq-serve (int8)", "route": "/search", "levels": ours, "notes": []},
        },
        "raw": {"runs": 300, "p50_ms": raw_p50, "p99_ms": 5.0},
        "parity": {"cosine": 0.99995, "ok": True},
        "model_batch": {"batch": 32, "runs": 10, "batch_ms_p50": 28.4, "sentences_per_s": 1126.8},
        "notes": [],
    }


def test_ratios_are_ours_over_peer_on_common_levels_only() -> None:
    r = ratios(OURS, PEER)
    assert [x["concurrency"] for x in r] == [1, 32]
    assert r[0] == {"concurrency": 1, "req_per_s": 2.5, "p50": 0.4, "p99": 0.4}
    assert r[1]["req_per_s"] == 1.3


def test_checks_apply_the_issue_targets() -> None:
    by_name = {c["check"]: c for c in checks(variant())}
    assert by_name["c=32 req/s ours / peer >= 1.2"]["pass"] is True
    assert by_name["c=32 req/s ours / peer >= 1.2"]["value"] == 1.3
    assert by_name["c=32 p99 ours <= 100 ms"]["pass"] is True
    c1 = by_name["c=1 p50 ours / raw in-process p50 <= 1.3"]
    assert c1["value"] == round(4.0 / 3.5, 3) and c1["pass"] is True
    assert by_name["ours: no errors"]["pass"] and by_name["peer: no errors"]["pass"]


def test_checks_fail_when_targets_are_missed() -> None:
    slow = [level(1, 250.0, 5.0, 8.0), level(32, 590.0, 45.0, 101.0, errors=2)]
    by_name = {c["check"]: c for c in checks(variant(slow, raw_p50=3.5))}
    assert not by_name["c=32 req/s ours / peer >= 1.2"]["pass"]  # 1.18
    assert not by_name["c=32 p99 ours <= 100 ms"]["pass"]
    assert not by_name["c=1 p50 ours / raw in-process p50 <= 1.3"]["pass"]  # 1.43
    assert by_name["ours: no errors"] == {"check": "ours: no errors", "value": 2, "pass": False}


def test_markdown_has_both_systems_ratios_and_checks() -> None:
    results = {
        "command": "python -m tools.bench_peer --levels 1,32",
        "host": {"cpus": 2, "platform": "Linux"},
        "started_at": "2026-11-26T00:00:00+00:00",
        "query": "can I cancel mi pedido",
        "duration_s": 15.0,
        "max_requests": 20000,
        "warmup_s": 3.0,
        "variants": {
            "int8": {**variant(), "ratios": ratios(OURS, PEER), "checks": checks(variant())}
        },
    }
    md = render_markdown(results)
    assert "## int8" in md
    assert "cosine 0.99995 (ok" in md
    assert "batch 32 of the query): 28.4 ms a batch, 1,127 sentences/s." in md
    assert "| infinity-emb 0.0.78 (int8) /embeddings | 32 | 500.0 | 60.00 |" in md
    # ours at c=1: p50 4.0 ms against raw 3.5 ms
    assert (
        "| faq-serve (int8) /search | 1 | 250.0 | 4.00 | 6.00 | 8.00 | 0 | 10.00 | 2.00 | 1.14 |"
        in md
    )
    assert "| 32 | 1.30 | 0.75 | 0.45 |" in md
    assert "- pass: c=32 req/s ours / peer >= 1.2 (measured 1.30)" in md
    assert "Note: peer note" in md


def test_scale_checks_compare_large_with_sample() -> None:
    sample = {"levels": [level(1, 200.0, 4.0, 8.0), level(32, 600.0, 50.0, 90.0)]}
    good = {"levels": [level(1, 150.0, 7.9, 12.0), level(32, 500.0, 60.0, 95.0)]}
    bad = {"levels": [level(1, 90.0, 8.1, 12.0), level(32, 470.0, 60.0, 95.0)]}
    ok = {c["check"]: c for c in scale_checks({"sample": sample, "large": good})}
    assert ok["c=1 p50 large / sample <= 2"]["pass"]
    assert ok["c=32 req/s large / sample >= 0.8"]["value"] == round(500 / 600, 3)
    assert ok["c=32 req/s large / sample >= 0.8"]["pass"]
    fail = {c["check"]: c for c in scale_checks({"sample": sample, "large": bad})}
    assert not fail["c=1 p50 large / sample <= 2"]["pass"]
    assert not fail["c=32 req/s large / sample >= 0.8"]["pass"]
    md = render_100k(
        {
            "command": "x",
            "host": {"cpus": 2},
            "started_at": "t",
            "variant": "int8",
            "query": "q",
            "duration_s": 15.0,
            "max_requests": 100,
            "indexes": {
                "sample": {"faq": "data/faq.jsonl", "entries": 141, **sample},
                "large": {"faq": "big.jsonl", "entries": 100000, **bad},
            },
            "checks": list(fail.values()),
        }
    )
    assert "| large (big.jsonl) | 100000 |" in md
    assert "- FAIL: c=1 p50 large / sample <= 2 (measured 2.025)" in md


def test_cosine_and_peer_notes() -> None:
    assert cosine([1.0, 0.0], [1.0, 0.0]) == 1.0
    assert abs(cosine([1.0, 0.0], [0.0, 2.0])) < 1e-12
    failed = "WARNING  Optimization failed with\n  OptimizationConfig ... Going to use the model."
    assert "failed" in peer_log_notes(failed)[0]
    assert "model_optimized.onnx" in peer_log_notes("", ["model_optimized.onnx"])[0]
    assert peer_log_notes("") == []


def test_inherited_settings_are_recorded_without_secrets_or_our_own() -> None:
    environ = {
        "FAQ_BATCHING": "on",
        "FAQ_WORKERS": "2",
        "FAQ_SEARCH_API_KEY": "s3cret",
        "FAQ_ADMIN_API_KEY_FILE": "/run/key",
        "FAQ_PORT": "9999",
        "PATH": "/bin",
    }
    assert inherited_settings(environ) == {"FAQ_BATCHING": "on", "FAQ_WORKERS": "2"}
