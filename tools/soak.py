"""`make soak`: faq-serve under steady load with valid and invalid requests for N minutes,
an embeddings flood beside it and an admin reindex every minute.

    .venv/bin/python -m tools.soak [--minutes 10] [--concurrency 32] [--variant int8]
        [--flood-concurrency 4] [--reindex-every 60]

The sample FAQ is indexed for the variant (its own embedded directory), `faq-serve` started,
and wrk sends a fixed rotation of requests over `c` keep-alive connections: valid searches
(short, code-mixed, very long, top_k 50, with a filter) and invalid ones (empty or blank query,
missing query, top_k 0 and 1000, an unknown field, broken JSON, a text body, an unknown route,
the wrong method). The server's resident memory (all its processes) is sampled every few seconds.

Beside wrk, `--flood-concurrency` threads post /v1/embeddings (16 texts each) as fast as they
are answered, and every `--reindex-every` seconds the FAQ is reindexed through
POST /admin/reindex (inline items; the job is followed to its end).

Printed at the end, and written to `<out>/result.json`: the status counts (searches, the flood,
the reindex jobs), the 5xx count, the socket errors (connect, read, write, timeout) and the RSS
growth from the end of the first minute to the end of the run. Exit status 1 when there is any
5xx other than the documented 503 (overload, with Retry-After), a socket error, a reindex that
did not succeed, growth of 5% or more, or the server died; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tools.bench_peer import (
    DEFAULT_MODEL_DIR,
    VENV_BIN,
    OursConfig,
    build_index,
    default_query,
    our_env,
)
from tools.loadgen import Request, Server, WrkResult, json_post, run_wrk, sample_tree

GROWTH_LIMIT_PCT = 5.0


def request_mix(query: str, headers: Mapping[str, str] | None = None) -> list[Request]:
    """Valid and invalid requests, interleaved (two valid, one invalid, repeated)."""
    h = dict(headers or {})
    valid = [
        json_post("/search", {"query": query, "top_k": 5}, h),
        json_post("/search", {"query": "wie lange dauert der refund", "top_k": 3}, h),
        json_post("/search", {"query": "barang saya belum sampai, where is my order"}, h),
        json_post("/search", {"query": ("very long question about my order " * 120)}, h),
        json_post("/search", {"query": "je veux changer my shipping address", "top_k": 50}, h),
        json_post("/search", {"query": query, "filters": {"lang": "en"}}, h),
    ]
    invalid = [
        json_post("/search", {"query": ""}, h),
        json_post("/search", {"query": "   "}, h),
        json_post("/search", {"top_k": 5}, h),
        json_post("/search", {"query": query, "top_k": 0}, h),
        json_post("/search", {"query": query, "top_k": 1000}, h),
        json_post("/search", {"query": query, "unknown": True}, h),
        Request("POST", "/search", '{"query": "broken', headers=h),
        Request("POST", "/search", "query=plain text", content_type="text/plain", headers=h),
        Request("POST", "/no-such-route", "{}", headers=h),
        Request("GET", "/search", None, content_type=None, headers=h),
    ]
    mix: list[Request] = []
    for i in range(max(len(valid), len(invalid))):
        mix.append(valid[(2 * i) % len(valid)])
        mix.append(valid[(2 * i + 1) % len(valid)])
        mix.append(invalid[i % len(invalid)])
    return mix


@dataclass(frozen=True)
class RssSample:
    t_s: float
    rss_mb: float


def rss_growth_pct(
    samples: Sequence[RssSample], baseline_s: float
) -> tuple[float | None, float | None]:
    """(growth %, baseline MB): last sample against the first sample taken at or after
    `baseline_s`; None when no sample is that late or none comes after it."""
    later = [s for s in samples if s.t_s >= baseline_s]
    if len(later) < 2:
        return None, None
    base, last = later[0].rss_mb, later[-1].rss_mb
    if base <= 0:
        return None, None
    return (last - base) / base * 100.0, base


def verdict(
    server_errors: int,
    socket_errors: int,
    growth_pct: float | None,
    *,
    server_alive: bool = True,
    limit_pct: float = GROWTH_LIMIT_PCT,
) -> list[str]:
    """Why the soak failed; an empty list is a pass."""
    problems = []
    if server_errors:
        problems.append(f"{server_errors} responses with a 5xx status other than 503")
    if socket_errors:
        problems.append(f"{socket_errors} socket errors")
    if growth_pct is None:
        problems.append("RSS growth not measured (run shorter than the baseline point?)")
    elif growth_pct >= limit_pct:
        problems.append(f"RSS grew {growth_pct:.1f}% after the baseline (limit {limit_pct:g}%)")
    if not server_alive:
        problems.append("the server was not running at the end")
    return problems


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every_s = every_s
        self.samples: list[RssSample] = []
        self._stop_event = threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                rss = sample_tree(self.pid).rss_mb
            except ProcessLookupError:
                return
            self.samples.append(RssSample(round(time.monotonic() - self.started, 1), rss))
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class Extras(threading.Thread):
    """The soak's side load: an embeddings flood and a reindex every `every_s` seconds."""

    def __init__(
        self,
        base: str,
        headers: dict[str, str],
        admin_key: str,
        faq: Path,
        flood: int,
        every_s: float,
    ) -> None:
        super().__init__(daemon=True)
        self.base, self.headers, self.admin = base, headers, {"X-API-Key": admin_key}
        self.items = [json.loads(line) for line in faq.read_text(encoding="utf-8").splitlines()]
        self.flood, self.every_s = flood, every_s
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.flood_statuses: dict[str, int] = {}
        self.jobs: dict[str, int] = {}

    def _count(self, counts: dict[str, int], key: str) -> None:
        with self.lock:
            counts[key] = counts.get(key, 0) + 1

    def _flooding(self) -> None:
        body = {
            "model": "multilingual-e5-small",
            "input": [f"where is parcel {i}" for i in range(16)],
        }
        with httpx.Client(base_url=self.base, timeout=30) as client:
            body["model"] = client.get("/v1/models", headers=self.headers).json()["data"][0]["id"]
            while not self.stop_event.is_set():
                try:
                    r = client.post("/v1/embeddings", json=body, headers=self.headers)
                    self._count(self.flood_statuses, str(r.status_code))
                    if r.status_code == 429:
                        self.stop_event.wait(float(r.headers.get("retry-after", "1")) / 10)
                except httpx.TransportError as exc:
                    self._count(self.flood_statuses, type(exc).__name__)

    def run(self) -> None:
        floods = [threading.Thread(target=self._flooding, daemon=True) for _ in range(self.flood)]
        for thread in floods:
            thread.start()
        # The first reindex inside the warm-up minute (its one-time growth: the model's arena
        # for passage batches), then one every `every_s`.
        wait_s = min(20.0, self.every_s)
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self.stop_event.wait(wait_s):
                wait_s = self.every_s
                r = client.post("/admin/reindex", json={"items": self.items}, headers=self.admin)
                if r.status_code != 202:
                    self._count(self.jobs, f"refused {r.status_code}")
                    continue
                job_id = r.json()["id"]
                while (
                    state := client.get(f"/admin/reindex/{job_id}", headers=self.admin).json()[
                        "state"
                    ]
                ) in ("queued", "running"):
                    time.sleep(0.5)
                self._count(self.jobs, state)
        for thread in floods:
            thread.join(timeout=30)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=120)


def summary(
    result: WrkResult,
    samples: Sequence[RssSample],
    baseline_s: float,
    alive: bool,
    extras: Extras | None = None,
) -> dict[str, Any]:
    growth, base = rss_growth_pct(samples, baseline_s)
    undocumented = sum(v for k, v in result.statuses.items() if int(k) >= 500 and int(k) != 503)
    if extras is not None:
        undocumented += sum(
            v
            for k, v in extras.flood_statuses.items()
            if k.isdigit() and int(k) >= 500 and k != "503"
        )
    problems = verdict(undocumented, result.socket_error_count, growth, server_alive=alive)
    if extras is not None:
        if any(not k.isdigit() for k in extras.flood_statuses):
            problems.append(f"embeddings flood transport errors: {extras.flood_statuses}")
        if set(extras.jobs) - {"succeeded"}:
            problems.append(f"reindex jobs not all succeeded: {extras.jobs}")
    return {
        "flood_statuses": None if extras is None else extras.flood_statuses,
        "reindex_jobs": None if extras is None else extras.jobs,
        "seconds": result.seconds,
        "concurrency": result.concurrency,
        "requests": result.requests,
        "statuses": result.statuses,
        "server_errors_5xx": result.server_errors,
        "undocumented_5xx": undocumented,
        "socket_errors": result.socket_errors,
        "latency_ms": result.latency_ms,
        "rss_baseline_s": baseline_s,
        "rss_baseline_mb": None if base is None else round(base, 1),
        "rss_end_mb": round(samples[-1].rss_mb, 1) if samples else None,
        "rss_max_mb": round(max(s.rss_mb for s in samples), 1) if samples else None,
        "rss_growth_pct": None if growth is None else round(growth, 2),
        "rss_samples": [[s.t_s, round(s.rss_mb, 1)] for s in samples],
        "problems": problems,
        "pass": not problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--baseline-s",
        type=float,
        default=60.0,
        help="RSS growth is measured from this point (default: the end of the first minute; "
        "a run this short or shorter uses a third of its length)",
    )
    parser.add_argument(
        "--sample-every", type=float, default=5.0, help="seconds between RSS samples"
    )
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8")
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("FAQ_MODEL_DIR", DEFAULT_MODEL_DIR))
    )
    parser.add_argument("--faq", type=Path, default=Path("data/faq.jsonl"))
    parser.add_argument("--qdrant-root", type=Path, default=Path("var/soak"))
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--timeout", type=float, default=5.0, help="wrk's per-request timeout")
    parser.add_argument(
        "--flood-concurrency", type=int, default=4, help="embeddings flood threads (0: none)"
    )
    parser.add_argument(
        "--reindex-every", type=float, default=60.0, help="seconds between reindexes (0: none)"
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/soak"))
    args = parser.parse_args(argv)
    duration_s = args.minutes * 60.0
    baseline_s = args.baseline_s if duration_s > args.baseline_s else duration_s / 3.0
    cfg = OursConfig(
        model_dir=args.model_dir,
        variant=args.variant,
        faq=args.faq,
        qdrant_path=args.qdrant_root / f"qdrant-{args.variant}",
        port=args.port,
    )
    build_index(cfg)
    headers = {}
    if os.environ.get("FAQ_SEARCH_API_KEY"):
        headers["X-API-Key"] = os.environ["FAQ_SEARCH_API_KEY"]
    mix = request_mix(default_query(), headers)
    base = f"http://127.0.0.1:{args.port}"
    args.out.mkdir(parents=True, exist_ok=True)
    admin_key = secrets.token_hex(16)
    server = Server(
        "faq-serve",
        [str(VENV_BIN / "faq-serve")],
        health_url=f"{base}/health/ready",
        log=args.out / "faq-serve.log",
        env={**our_env(cfg), "FAQ_ADMIN_API_KEY": admin_key},
    )
    print(
        f"soak: {args.minutes:g} min at c={args.concurrency}, {len(mix)} requests in rotation "
        f"(2 valid : 1 invalid); RSS baseline at {baseline_s:.0f} s",
        flush=True,
    )
    with server.start(300.0):
        sampler = RssSampler(server.pid, args.sample_every)
        sampler.start()
        extras = Extras(
            base, headers, admin_key, args.faq, args.flood_concurrency,
            args.reindex_every if args.reindex_every > 0 else duration_s * 10,
        )  # fmt: skip
        extras.start()
        try:
            result = run_wrk(
                f"{base}/search",
                mix,
                concurrency=args.concurrency,
                duration_s=duration_s,
                max_requests=10**12,
                timeout_s=args.timeout,
            )
        finally:
            extras.stop()
            sampler.stop()
        alive = server.proc is not None and server.proc.poll() is None
    out = summary(result, sampler.samples, baseline_s, alive, extras)
    (args.out / "result.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    statuses = ", ".join(f"{k}: {v}" for k, v in out["statuses"].items())
    growth = out["rss_growth_pct"]
    print(f"requests: {out['requests']} in {out['seconds']:.0f} s ({statuses})")
    print(f"5xx: {out['server_errors_5xx']}; embeddings flood: {out['flood_statuses']}")
    print(f"reindex jobs: {out['reindex_jobs']}")
    print(f"socket errors: {sum(out['socket_errors'].values())} {out['socket_errors']}")
    print(
        f"RSS: {out['rss_baseline_mb']} MB at {baseline_s:.0f} s -> {out['rss_end_mb']} MB at the "
        f"end (max {out['rss_max_mb']} MB): growth "
        + ("not measured" if growth is None else f"{growth:.2f}%")
    )
    print(
        ("PASS" if out["pass"] else "FAIL: " + "; ".join(out["problems"]))
        + f"  ({args.out}/result.json)"
    )
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
