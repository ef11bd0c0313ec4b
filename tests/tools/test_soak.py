"""The soak verdict: 5xx, socket errors, RSS growth after the first minute; and its request mix."""

from __future__ import annotations

import json

from tools.loadgen import WrkResult
from tools.soak import RssSample, request_mix, rss_growth_pct, summary, verdict


def samples(*points: tuple[float, float]) -> list[RssSample]:
    return [RssSample(t, mb) for t, mb in points]


def test_growth_is_measured_from_the_first_sample_after_the_baseline() -> None:
    s = samples((0, 100.0), (30, 300.0), (60, 400.0), (300, 410.0), (600, 419.0))
    growth, base = rss_growth_pct(s, 60.0)
    assert base == 400.0
    assert growth is not None and abs(growth - 4.75) < 1e-9
    assert rss_growth_pct(samples((0, 100.0), (30, 120.0)), 60.0) == (None, None)


def test_verdict() -> None:
    assert verdict(0, 0, 4.99) == []
    assert verdict(0, 0, -3.0) == []
    assert verdict(0, 0, 5.0) == ["RSS grew 5.0% after the baseline (limit 5%)"]
    assert verdict(1, 0, 0.0) == ["1 responses with a 5xx status other than 503"]
    assert verdict(0, 2, 0.0) == ["2 socket errors"]
    assert verdict(0, 0, None)[0].startswith("RSS growth not measured")
    assert verdict(0, 0, 0.0, server_alive=False) == ["the server was not running at the end"]


def test_summary_fails_on_5xx_and_passes_on_4xx_only() -> None:
    def result(statuses: dict[str, int], timeouts: int = 0) -> WrkResult:
        return WrkResult(
            concurrency=32,
            seconds=600.0,
            requests=sum(statuses.values()),
            statuses=statuses,
            socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": timeouts},
            latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "mean": 1.0, "max": 9.0},
        )

    rss = samples((0, 100.0), (60, 200.0), (600, 201.0))
    good = summary(result({"200": 900, "404": 50, "405": 50, "422": 300}), rss, 60.0, True)
    assert good["pass"] and good["server_errors_5xx"] == 0 and good["rss_growth_pct"] == 0.5
    # A 503 is the documented overload answer (with Retry-After); a 500 is not.
    overloaded = summary(result({"200": 900, "503": 1}), rss, 60.0, True)
    assert overloaded["pass"] and overloaded["server_errors_5xx"] == 1
    bad = summary(result({"200": 900, "500": 1}, timeouts=1), rss, 60.0, True)
    assert not bad["pass"]
    assert bad["problems"] == ["1 responses with a 5xx status other than 503", "1 socket errors"]


def test_mix_holds_valid_and_invalid_requests() -> None:
    mix = request_mix("can I cancel mi pedido", {"X-API-Key": "k"})
    bodies = [r.body for r in mix]
    valid = [b for b in bodies if b and '"query": "can I cancel mi pedido", "top_k": 5}' in b]
    assert valid
    assert any(b == '{"query": "broken' for b in bodies)
    assert any(r.method == "GET" and r.path == "/search" for r in mix)
    assert any(r.content_type == "text/plain" for r in mix)
    assert any(
        b and json.loads(b).get("top_k") == 0 for b in bodies if b and b != '{"query": "broken'
    )
    assert all(r.headers == {"X-API-Key": "k"} for r in mix)
    # two valid requests for each invalid one
    assert len(mix) % 3 == 0
