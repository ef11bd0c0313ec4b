"""faq-bench against a live service with the fake encoder and small counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.main import create_app
from tests.app.conftest import REPO, SAMPLE_FAQ, build_index, serve, settings_for
from tests.fakes import FakeEncoder
from tools.bench import cli, load_queries, open_raw_index, raw_search, render, run_bench

EXAMPLES = REPO / "data" / "examples.json"
LEVELS = (1, 8, 32, 64)


@pytest.fixture(scope="module")
def fake_service(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FakeEncoder]:
    """One embedded index for the module; each test's service closes it before the next."""
    encoder = FakeEncoder(dim=384)
    path = tmp_path_factory.mktemp("bench") / "qdrant"
    build_index(path, encoder)
    return path, encoder


def test_bench_prints_every_level_with_sane_numbers(
    fake_service: tuple[Path, FakeEncoder], tmp_path: Path
) -> None:
    qdrant, encoder = fake_service
    settings = settings_for(tmp_path / "no-model", qdrant)
    with serve(create_app(settings, encoder_factory=lambda _: encoder)) as api:
        # The embedded store's files are read by any number of processes: the raw side reads
        # the service's own index.
        index, source = open_raw_index(settings, encoder, SAMPLE_FAQ)
        assert "faq_v1" in source
        raw = raw_search(settings, encoder, index, source)
        report = run_bench(
            str(api.base_url).rstrip("/"),
            levels=LEVELS,
            max_requests=70,
            max_seconds=10,
            queries=load_queries(EXAMPLES),
            raw=raw,
            raw_runs=30,
        )
    assert report.model == encoder.fingerprint and report.index == "faq_v1"
    assert report.raw is not None and report.raw.latency.p50_ms > 0
    assert report.raw.vector_latency is not None and report.raw.vector_latency.p50_ms > 0
    assert [lv.concurrency for lv in report.levels] == list(LEVELS)
    for lv in report.levels:
        assert lv.errors == {} and lv.ok == lv.requests == 70
        assert lv.req_per_s > 0
        lat = lv.latency
        assert 0 < lat.p50_ms <= lat.p95_ms <= lat.p99_ms
        assert lv.ratio_to_raw is not None
        assert math.isclose(lv.ratio_to_raw, lat.p50_ms / report.raw.latency.p50_ms)
    # Queueing: 64 requests in flight wait longer than one at a time.
    assert report.levels[-1].latency.p50_ms > report.levels[0].latency.p50_ms

    table = render(report)
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == list(LEVELS)
    assert "raw in-process" in table and "p50 / raw p50" in table
    assert "bare vector search instead" in table


def test_the_raw_measure_runs_the_routes_search(
    fake_service: tuple[Path, FakeEncoder], tmp_path: Path
) -> None:
    """The raw side's search answers what POST /search answers (lexicon, grouping, abstain):
    the ratio is what serving adds, not what the search does beyond a bare vector search."""
    qdrant, encoder = fake_service
    settings = settings_for(tmp_path / "no-model", qdrant)
    queries = load_queries(EXAMPLES)[:12]
    with serve(create_app(settings, encoder_factory=lambda _: encoder)) as api:
        served = [
            api.post("/search", json={"query": q, "top_k": 5}).json()["results"] for q in queries
        ]
        raw = raw_search(settings, encoder, *open_raw_index(settings, encoder, SAMPLE_FAQ))
        searched = [raw.route(raw.spec(q, 5)) for q in queries]
        bare = [raw.vector(raw.spec(q, 5)) for q in queries]
    for results, shaped in zip(served, searched, strict=True):
        assert [r["id"] for r in results] == [h.id for h in shaped.hits]
        assert [r["score"] for r in results] == pytest.approx(shaped.scores)
    # The bare vector search is another search: it differs on some of these queries.
    assert any(
        [r["id"] for r in results] != [h.id for h in hits]
        for results, hits in zip(served, bare, strict=True)
    )


def test_bench_counts_errors(fake_service: tuple[Path, FakeEncoder], tmp_path: Path) -> None:
    qdrant, encoder = fake_service
    settings = settings_for(tmp_path / "no-model", qdrant, search_api_key="right-key")
    with serve(create_app(settings, encoder_factory=lambda _: encoder)) as api:
        report = run_bench(
            str(api.base_url).rstrip("/"),
            levels=(2,),
            max_requests=10,
            max_seconds=10,
            queries=["where is my order"],
            headers={"X-API-Key": "wrong-key"},
        )
    (level,) = report.levels
    assert level.errors == {"401": 10} and level.ok == 0
    assert "| 2 | 10 | 10 (401: 10) |" in render(report)


def test_cli_get_route_writes_json(fake_service: tuple[Path, FakeEncoder], tmp_path: Path) -> None:
    qdrant, encoder = fake_service
    out = tmp_path / "bench.json"
    settings = settings_for(tmp_path / "no-model", qdrant)
    with serve(create_app(settings, encoder_factory=lambda _: encoder)) as api:
        base = str(api.base_url).rstrip("/")
        args = ["--url", base, "--get", "/health/live", "--levels", "1,4", "--requests", "20"]
        result = CliRunner().invoke(cli, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "/health/live" in result.output
    data = json.loads(out.read_text())
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 4]
    assert all(lv["ok"] == 20 for lv in data["levels"]) and data["raw"] is None

    bad = CliRunner().invoke(cli, ["--url", base, "--levels", "1,x", "--get", "/"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
