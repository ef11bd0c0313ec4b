"""The paired comparisons (`tools.ab_serve`, `tools.c1_ratio`): what they compute from bursts,
and the settings and metrics they read."""

from __future__ import annotations

import argparse

import pytest

from tools.ab_serve import dropped_total, setting, summary
from tools.ab_serve import render_markdown as render_ab
from tools.c1_ratio import render_markdown as render_c1
from tools.c1_ratio import summary as c1_summary
from tools.loadgen import parse_duration_means


def burst(p50: float, rps: float) -> dict[str, float]:
    return {"p50_ms": p50, "p99_ms": 2 * p50, "req_per_s": rps, "errors": 0}


def test_ab_summary_is_the_median_of_pairwise_ratios() -> None:
    # Drift: both sides slow down together in the middle; B is 10% slower in every pair.
    a = [burst(p, 1000 / p) for p in (3.0, 6.0, 3.0)]
    b = [burst(p * 1.1, 1000 / (p * 1.1)) for p in (3.0, 6.0, 3.0)]
    s = summary({"a": a, "b": b})
    assert s["b_over_a"]["p50_ms"] == pytest.approx(1.1)
    assert s["b_over_a"]["req_per_s"] == pytest.approx(1 / 1.1)
    assert s["a"]["p50_ms"] == 3.0 and s["b"]["p50_ms"] == pytest.approx(3.3)
    assert s["b_faster_p50_in"] == 0 and s["pairs"] == 3
    # A pair is A's burst i with B's burst i, not any A with any B.
    swapped = summary({"a": a[:2], "b": [b[1], b[0]]})
    assert swapped["b_over_a"]["p50_ms"] == pytest.approx((2.2 + 0.55) / 2)


def test_ab_settings_and_histogram_means() -> None:
    assert setting("FAQ_ORT_SPINNING=true") == ("FAQ_ORT_SPINNING", "true")
    for bad in ("ORT_SPINNING=true", "FAQ_ORT_SPINNING", "FAQ_PORT=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            setting(bad)
    text = "\n".join(
        [
            "# HELP faq_inference_duration_seconds One run.",
            "faq_inference_duration_seconds_sum 5.0",
            "faq_inference_duration_seconds_count 2000.0",
            'faq_inference_duration_seconds_bucket{le="0.005"} 1990.0',
            "faq_queue_wait_duration_seconds_sum 0.0",
            "faq_queue_wait_duration_seconds_count 0.0",
            "faq_batch_size_sum 2000.0",
            "faq_batch_size_count 2000.0",
            'faq_http_request_duration_seconds_sum{route="/search",status="200"} 3.0',
            'faq_http_request_duration_seconds_count{route="/search",status="200"} 1000.0',
        ]
    )
    assert parse_duration_means(text) == {
        'faq_http_request_duration_seconds{route="/search",status="200"}': 3.0,
        "faq_inference_duration_seconds": 2.5,
    }


def test_ab_markdown_names_both_sides_and_the_ratio() -> None:
    bursts = {"a": [burst(3.0, 330.0)], "b": [burst(3.3, 300.0)]}
    results = {
        "command": "python -m tools.ab_serve --b FAQ_ORT_SPINNING=true",
        "started_at": "2026-11-26T13:00:00+00:00",
        "host": {"cpus": 2},
        "variant": "int8",
        "concurrency": 1,
        "pairs": 1,
        "burst_s": 2.0,
        "query": "q",
        "top_k": 5,
        "settings": {"a": {}, "b": {"FAQ_ORT_SPINNING": "true"}},
        "bursts": bursts,
        "summary": summary(bursts),
        "histogram_means_ms": {"a": {"faq_x_duration_seconds": 1.0}, "b": {}},
    }
    md = render_ab(results)
    assert "| B | FAQ_ORT_SPINNING=true | 3.300 |" in md
    assert "| A | (inherited only) | 3.000 |" in md
    assert "p50 **1.100**" in md and "| faq_x_duration_seconds | 1.000 | - |" in md


def test_ab_querylog_run_reports_what_the_log_kept_and_dropped() -> None:
    metrics = (
        "# HELP faq_querylog_dropped_total Searches the query log did not keep.\n"
        "# TYPE faq_querylog_dropped_total counter\n"
        'faq_querylog_dropped_total{reason="queue_full"} 3.0\n'
        'faq_querylog_dropped_total{reason="write_failed"} 1.0\n'
        'faq_querylog_dropped_created{reason="queue_full"} 1.7e+09\n'
    )
    assert dropped_total(metrics) == 4
    assert dropped_total("") == 0
    bursts = {"a": [burst(3.0, 330.0)], "b": [burst(3.1, 320.0)]}
    results = {
        "command": "python -m tools.ab_serve --querylog --concurrency 32",
        "started_at": "2026-11-26T13:00:00+00:00",
        "host": {"cpus": 2},
        "variant": "int8",
        "concurrency": 32,
        "pairs": 1,
        "burst_s": 2.0,
        "query": "q",
        "top_k": 5,
        "settings": {"a": {"FAQ_QUERY_LOG": "off"}, "b": {"FAQ_QUERY_LOG": "sqlite"}},
        "bursts": bursts,
        "summary": summary(bursts),
        "histogram_means_ms": {"a": {}, "b": {}},
        "querylog": {"logged": 12345, "dropped": 0},
    }
    assert "B's query log kept 12,345 searches and dropped 0." in render_ab(results)


def pair(raw: float, ours: float, bare: float | None = None) -> dict[str, float]:
    out = {"raw_p50_ms": raw, "ours_p50_ms": ours, "ours_req_per_s": 1000 / ours, "errors": 0}
    return out if bare is None else {**out, "vector_p50_ms": bare}


def test_c1_ratio_reads_the_target_on_the_median_of_pairs() -> None:
    # The raw side drifts (2.0 -> 2.6 ms); the service keeps 1.25x of it in every pair but one.
    pairs = [pair(2.0, 2.5), pair(2.6, 3.25), pair(2.2, 2.75), pair(2.0, 3.0)]
    s = c1_summary(pairs)
    assert s["ratio_median"] == pytest.approx(1.25)
    assert s["ratio_min"] == pytest.approx(1.25) and s["ratio_max"] == pytest.approx(1.5)
    assert s["pairs_within_target"] == 3 and s["reached"]
    # The bare vector search's ratio is shown beside it and decides nothing.
    slow_pairs = [pair(2.0, 3.0, 1.5), pair(2.0, 2.5, 2.0), pair(2.0, 2.9, 1.0)]
    slow = c1_summary(slow_pairs)
    assert slow["ratio_median"] == pytest.approx(1.45) and not slow["reached"]
    assert slow["vector_ratio_median"] == pytest.approx(2.0)
    md = render_c1(
        {
            "command": "python -m tools.c1_ratio",
            "started_at": "2026-11-26T13:00:00+00:00",
            "host": {"cpus": 2},
            "variant": "int8",
            "query": "q",
            "top_k": 5,
            "raw_runs": 300,
            "burst_s": 5.0,
            "settings": {},
            "pairs": slow_pairs,
            "summary": slow,
            "histogram_means_ms": {"faq_inference_duration_seconds": 2.25},
        }
    )
    assert "| `faq_inference_duration_seconds` | 2.250 |" in md
    assert "median **1.45**" in md and "**not reached**" in md
    assert "| 2 | 2.000 | 2.500 | 1.25 | 0 | 2.000 | 1.25 |" in md
    assert "Against the bare vector search: median 2.00" in md
