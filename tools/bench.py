"""`faq-bench`: load a running service over loopback and compare it with the raw in-process cost.

For each concurrency level (default 1, 8, 32, 64) as many keep-alive connections send
`POST /search` with the queries of `data/examples.json`, in turn, until a request count or a
time limit per level is reached; the table gives p50/p95/p99 latency of the successful
requests, successful requests per second and the errors. In the same run, before the HTTP
levels and with the service idle, the raw cost of one search is measured in this process:
tokenise + ONNX Runtime + the route's search, with the service's own encoder loader
(`app.main.load_onnx_encoder`) and answering (`app.main.served_answering`: the lexicon of the
fused search, grouping by topic, the answer's language, abstain) on the same model directory
and settings, and the same index: the server when `FAQ_QDRANT_URL` is set, else a replica of
the embedded directory read under its access lock (`app/services/replica.py`), or, when a
one-worker service holds that directory, a private in-memory index built from the FAQ file.
The last column, service p50 / raw p50, is what HTTP, the framework, the inference thread and
queueing add. Alternating with it, the same tokenise + ONNX Runtime with a bare vector search
(top_k nearest, no lexicon, no grouping or abstain) is timed too: `vector_latency`, the raw
measure of earlier reports, shown beside it.

The client shares the machine with the service: on a small host its own CPU use is part of
what is measured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer

from app.api.routes.search import query_spec
from app.api.schemas.search import SearchRequest
from app.core.config import Settings
from app.services.answering import Answering, QuerySpec, Shaped
from index_builder.model.encoder import Encoder
from index_builder.store import Hit, Store

cli = typer.Typer(add_completion=False, help=__doc__)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls(float("nan"), float("nan"), float("nan"))
        p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99))


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int]
    seconds: float
    req_per_s: float
    latency: Latency
    ratio_to_raw: float | None = None


@dataclass(frozen=True)
class RawResult:
    runs: int
    latency: Latency  # tokenise + ORT + the route's search and answers, in this process
    source: str
    vector_latency: Latency | None = None  # tokenise + ORT + a bare vector search


@dataclass(frozen=True)
class RawSearch:
    """What the raw measure runs: the service's encoder, index and answering, no HTTP."""

    encoder: Encoder
    index: Store
    source: str
    answering: Answering
    max_query_chars: int
    # One loop for every call: the route's answering awaits the store's search.
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    @staticmethod
    def spec(query: str, top_k: int) -> QuerySpec:
        """The search a request for `query` asks for, with the route's defaults (built once per
        query, outside the timed runs: the service validates its body outside the search too)."""
        return query_spec(SearchRequest(query=query, top_k=top_k))

    def route(self, spec: QuerySpec) -> Shaped:
        """What `POST /search` does in process (`SearchService._answer_batch`), without the
        inference thread, HTTP and metrics."""
        vectors = self.encoder.encode([spec.text[: self.max_query_chars]], "query").vectors
        answer = self.answering.answer_batch(
            [spec],
            vectors,
            self.index.search_batch,
            self.max_query_chars,
            topic_entries=self.index.topic_entries(),
        )
        return self.loop.run_until_complete(answer)[0]

    def vector(self, spec: QuerySpec) -> list[Hit]:
        """Tokenise + ORT + the top_k nearest entries, nothing else."""
        return self.index.search(self.encoder.encode([spec.text], "query").vectors[0], spec.top_k)


@dataclass
class BenchReport:
    url: str
    route: str
    queries: int
    top_k: int
    model: str | None
    index: str | None
    levels: list[LevelResult] = field(default_factory=list)
    raw: RawResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_queries(path: Path) -> list[str]:
    items = json.loads(path.read_text(encoding="utf-8"))
    queries = [str(item["query"]) if isinstance(item, dict) else str(item) for item in items]
    if not queries:
        raise ValueError(f"{path}: no queries")
    return queries


async def drive_level(
    url: str,
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    route: str = "/search",
    queries: Sequence[str] = (),
    top_k: int = 5,
    headers: dict[str, str] | None = None,
) -> LevelResult:
    """`concurrency` connections, each sending one request after the other, until the count
    or the time is up. GET `route` when no queries are given (e.g. /health/live)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=60, headers=headers or {}
    ) as client:

        async def send(i: int) -> httpx.Response:
            if not queries:
                return await client.get(route)
            body = {"query": queries[i % len(queries)], "top_k": top_k}
            return await client.post(route, json=body)

        # Open the connections first so that connection setup is not measured.
        await asyncio.gather(*(send(i) for i in range(concurrency)), return_exceptions=True)

        counter = itertools.count()
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        deadline = time.monotonic() + max_seconds

        async def worker() -> None:
            while True:
                i = next(counter)
                if i >= max_requests or time.monotonic() >= deadline:
                    return
                started = time.perf_counter()
                try:
                    response = await send(i)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(response.status_code)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    done = len(latencies) + sum(errors.values())
    return LevelResult(
        concurrency=concurrency,
        requests=done,
        ok=len(latencies),
        errors=dict(errors),
        seconds=round(seconds, 3),
        req_per_s=len(latencies) / seconds if seconds > 0 else 0.0,
        latency=Latency.of(latencies),
    )


def measure_raw(
    raw: RawSearch, queries: Sequence[str], *, runs: int, top_k: int = 5
) -> tuple[Latency, Latency]:
    """`runs` of the route's search and as many bare vector searches, alternating (a drift of
    the machine hits both alike); the latencies of each."""
    specs = [raw.spec(q, top_k) for q in queries]
    for spec in specs[:5]:  # warm caches and ORT's first-run allocations
        raw.route(spec)
        raw.vector(spec)
    times: dict[str, list[float]] = {"route": [], "vector": []}
    both = (("route", raw.route), ("vector", raw.vector))
    for i in range(runs):
        spec = specs[i % len(specs)]
        # Which goes first alternates too: neither always runs right after the other.
        for name, run in both if i % 2 == 0 else both[::-1]:
            started = time.perf_counter()
            run(spec)
            times[name].append(time.perf_counter() - started)
    return Latency.of(times["route"]), Latency.of(times["vector"])


def open_raw(settings: Settings, faq: Path) -> RawSearch:
    """The service's encoder, index (`open_raw_index`) and answering, loaded here with the
    service's thread limits."""
    from app.main import limit_threads, load_onnx_encoder

    limit_threads()
    encoder = load_onnx_encoder(settings)
    return raw_search(settings, encoder, *open_raw_index(settings, encoder, faq))


def raw_search(settings: Settings, encoder: Encoder, index: Store, source: str) -> RawSearch:
    from app.main import served_answering

    answering = served_answering(settings, encoder)
    return RawSearch(encoder, index, source, answering, settings.max_query_chars)


def open_raw_index(settings: Settings, encoder: Encoder, faq: Path) -> tuple[Store, str]:
    """The service's index, read without disturbing the service (the embedded store's files
    are read by any number of processes); and what it is. `faq` is indexed when there is none."""
    from app.services.index_guard import open_settings_store
    from index_builder.faq import read_faq

    store = open_settings_store(settings)
    if store.current_collection() is None:
        store.build(read_faq(faq), encoder, progress=False)
    where = settings.qdrant_url or settings.index_path
    return store, f"{where} ({store.current_collection()})"


def wait_ready(url: str, headers: dict[str, str], timeout_s: float) -> None:
    """Poll /health/ready until it answers 200 (a service still loading, or reloading)."""
    deadline = time.monotonic() + timeout_s
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/health/ready", headers=headers, timeout=5)
            if r.status_code == 200:
                return
            problem = str(r.json().get("problem") or r.status_code)
        except (httpx.HTTPError, ValueError) as exc:
            problem = str(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s: {problem}")


def service_identity(url: str, headers: dict[str, str]) -> tuple[str | None, str | None]:
    try:
        body = httpx.get(f"{url}/health/ready", headers=headers, timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return None, None
    return body.get("model"), body.get("index")


def run_bench(
    url: str,
    *,
    levels: Sequence[int],
    max_requests: int,
    max_seconds: float,
    queries: Sequence[str],
    top_k: int = 5,
    route: str = "/search",
    headers: dict[str, str] | None = None,
    raw: RawSearch | None = None,
    raw_runs: int = 200,
) -> BenchReport:
    """Raw cost first (service idle), then each level; the report holds both and their ratio."""
    headers = headers or {}
    model, index_name = service_identity(url, headers)
    is_search = route == "/search"
    report = BenchReport(
        url=url,
        route=route,
        queries=len(queries) if is_search else 0,
        top_k=top_k,
        model=model,
        index=index_name,
    )
    if raw is not None and is_search:
        searched, bare = measure_raw(raw, queries, runs=raw_runs, top_k=top_k)
        report.raw = RawResult(raw_runs, searched, raw.source, bare)
        if model is not None and model != raw.encoder.fingerprint:
            report.notes.append(
                f"the service runs {model} but the raw measure used {raw.encoder.fingerprint}: "
                "the ratio compares different models"
            )
    for concurrency in levels:
        result = asyncio.run(
            drive_level(
                url,
                concurrency=concurrency,
                max_requests=max_requests,
                max_seconds=max_seconds,
                route=route,
                queries=queries if is_search else (),
                top_k=top_k,
                headers=headers,
            )
        )
        if report.raw is not None and report.raw.latency.p50_ms > 0:
            ratio = result.latency.p50_ms / report.raw.latency.p50_ms
            result = replace(result, ratio_to_raw=ratio)
        report.levels.append(result)
    return report


def render(report: BenchReport) -> str:
    lines = [
        f"service {report.url}{report.route}  model {report.model or '?'}  "
        f"index {report.index or '?'}",
    ]
    if report.queries:
        lines.append(f"{report.queries} queries from the examples, top_k {report.top_k}")
    if report.raw is not None:
        r = report.raw.latency
        lines.append(
            f"raw in-process (tokenise + ORT + the route's search and answers, "
            f"{report.raw.runs} runs, {report.raw.source}): p50 {r.p50_ms:.2f} ms, "
            f"p95 {r.p95_ms:.2f} ms, p99 {r.p99_ms:.2f} ms"
        )
        v = report.raw.vector_latency
        if v is not None:
            lines.append(
                f"raw in-process, bare vector search instead (no lexicon, grouping or "
                f"abstain): p50 {v.p50_ms:.2f} ms, p99 {v.p99_ms:.2f} ms"
            )
    lines += [
        "",
        "| concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms | p50 / raw p50 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in report.levels:
        errors = sum(lv.errors.values())
        detail = " (" + ", ".join(f"{k}: {v}" for k, v in sorted(lv.errors.items())) + ")"
        ratio = f"{lv.ratio_to_raw:.2f}" if lv.ratio_to_raw is not None else "-"
        lines.append(
            f"| {lv.concurrency} | {lv.requests} | {errors}{detail if errors else ''} | "
            f"{lv.req_per_s:.1f} | {lv.latency.p50_ms:.1f} | {lv.latency.p95_ms:.1f} | "
            f"{lv.latency.p99_ms:.1f} | {ratio} |"
        )
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _levels(value: str) -> list[int]:
    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of integers: {value!r}") from None
    if not levels or min(levels) < 1:
        raise typer.BadParameter("levels must be integers >= 1")
    return levels


@cli.command()
def main(
    url: Annotated[
        str | None, typer.Option(help="Service base URL (default: FAQ_HOST:FAQ_PORT).")
    ] = None,
    levels: Annotated[str, typer.Option(help="Concurrency levels, comma-separated.")] = (
        "1,8,32,64"
    ),
    requests: Annotated[int, typer.Option(min=1, help="Most requests per level.")] = 400,
    duration: Annotated[float, typer.Option(min=0.1, help="Most seconds per level.")] = 15.0,
    examples: Annotated[Path, typer.Option(help="Queries (JSON list).")] = Path(
        "data/examples.json"
    ),
    top_k: Annotated[int, typer.Option(min=1, max=50)] = 5,
    raw_runs: Annotated[int, typer.Option(min=0, help="In-process searches (0 = skip).")] = 200,
    faq: Annotated[
        Path, typer.Option(help="FAQ file for a private index when the directory is held.")
    ] = Path("data/faq.jsonl"),
    get: Annotated[
        str | None, typer.Option(help="GET this route instead of POST /search (no raw part).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results here.")] = (
        None
    ),
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for /health/ready before starting.")
    ] = 0.0,
) -> None:
    """Benchmark a running service; model and index settings come from the FAQ_* variables."""
    settings = Settings()
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    headers = {}
    if settings.search_api_key is not None:
        headers["X-API-Key"] = settings.search_api_key.get_secret_value()
    queries = load_queries(examples)
    if wait > 0:
        try:
            wait_ready(base, headers, wait)
        except TimeoutError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    raw = None
    if get is None and raw_runs > 0:
        raw = open_raw(settings, faq)
    report = run_bench(
        base,
        levels=_levels(levels),
        max_requests=requests,
        max_seconds=duration,
        queries=queries,
        top_k=top_k,
        route=get or "/search",
        headers=headers,
        raw=raw,
        raw_runs=raw_runs,
    )
    typer.echo(render(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        typer.echo(f"results written to {json_out}")


def run() -> None:
    cli()


if __name__ == "__main__":
    run()
