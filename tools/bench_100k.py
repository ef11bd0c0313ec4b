"""`make bench-100k`: faq-serve on a 100k-entry index against the same service on the sample index.

Both FAQ files are indexed for the variant (each into its own embedded directory under
`--qdrant-root`; an unchanged file is not re-embedded), then, one index at a time: the raw
in-process cost (faq-bench --raw-runs, service not running), `faq-serve`, a warm-up and the
levels with wrk (the same machinery and query as `make bench-peer`). The report compares the
large index with the sample one: c=1 p50 (issue 10: at most 2x) and c=32 req/s (at least 0.8x).

    .venv/bin/python -m tools.bench_100k --large var/bench-100k/faq.jsonl --sample data/faq.jsonl
"""

from __future__ import annotations

import argparse
import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.bench_peer import (
    OursConfig,
    add_load_options,
    build_index,
    common_results,
    fmt,
    level_by_c,
    measure_raw,
    plan_of,
    ratio_of,
    run_ours,
    target,
    write_results,
)

INDEXES = ("sample", "large")


def scale_checks(indexes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The issue's two scale targets, from each index's levels (large vs sample)."""
    sample = level_by_c(indexes.get("sample", {}).get("levels", []))
    large = level_by_c(indexes.get("large", {}).get("levels", []))
    out: list[dict[str, Any]] = []
    if 1 in sample and 1 in large:
        ratio = ratio_of(large[1]["latency_ms"]["p50"], sample[1]["latency_ms"]["p50"])
        out.append(target("c=1 p50 large / sample <= 2", ratio, at_most=2.0))
    if 32 in sample and 32 in large:
        ratio = ratio_of(large[32]["req_per_s"], sample[32]["req_per_s"])
        out.append(target("c=32 req/s large / sample >= 0.8", ratio, at_least=0.8))
    for name in INDEXES:
        levels = indexes.get(name, {}).get("levels", [])
        if levels:
            errors = sum(int(lv["errors"]) for lv in levels)
            out.append(target(f"{name}: no errors", errors, at_most=0))
    return out


def render_markdown(results: Mapping[str, Any]) -> str:
    lines = [
        "# faq-serve on a 100k-entry index vs the sample index (`make bench-100k`)",
        "",
        f"Command: `{results['command']}`  ",
        f"Host: {results['host']['cpus']} CPUs; {results['started_at']}; model variant "
        f"{results['variant']}; wrk -t1, query `{results['query']}`; each level at most "
        f"{fmt(results['duration_s'])} s and {results['max_requests']} responses.",
        "",
        "| index | entries | build s | raw p50 ms | c | req/s | p50 ms | p90 ms | p99 ms "
        "| errors | server CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ix in results["indexes"].items():
        raw = (ix.get("raw") or {}).get("p50_ms")
        for lv in ix.get("levels", []):
            lat = lv["latency_ms"]
            lines.append(
                f"| {name} ({ix['faq']}) | {ix.get('entries', '-')} | "
                f"{fmt(ix.get('index_build_s'))} | {fmt(raw, 2)} | {lv['concurrency']} | "
                f"{fmt(lv['req_per_s'])} | {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | "
                f"{fmt(lat['p99'], 2)} | {lv['errors']} | {fmt(lv['server_cpu_s'], 2)} |"
            )
    lines += ["", "Targets of issue 10:", ""]
    for c in results.get("checks", []):
        value = c["value"]
        shown = "-" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        lines.append(f"- {'pass' if c['pass'] else 'FAIL'}: {c['check']} (measured {shown})")
    return "\n".join(lines) + "\n"


def _count_entries(faq: Path) -> int:
    with faq.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_100k", description=(__doc__ or "").split("\n\n")[0]
    )
    add_load_options(parser, "1,32")
    parser.add_argument("--large", type=Path, default=Path("var/bench-100k/faq.jsonl"))
    parser.add_argument("--sample", type=Path, default=Path("data/faq.jsonl"))
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--qdrant-root", type=Path, default=Path("var/bench-100k"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench-100k"))
    args = parser.parse_args(argv)
    if not args.large.is_file():
        parser.error(f"{args.large}: missing; make it with `make synth-faq`")
    plan = plan_of(args)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = common_results(args, argv, parser.prog)
    results["variant"] = args.variant
    results["indexes"] = {}
    for name, faq in (("sample", args.sample), ("large", args.large)):
        print(f"== {name}: {faq}", flush=True)
        cfg = OursConfig(
            model_dir=args.model_dir,
            variant=args.variant,
            faq=faq,
            qdrant_path=args.qdrant_root / f"qdrant-{name}-{args.variant}",
            port=args.port,
            top_k=args.top_k,
            raw_runs=args.raw_runs,
        )
        ix: dict[str, Any] = {"faq": str(faq), "entries": _count_entries(faq)}
        results["indexes"][name] = ix
        ix["index_build_s"] = build_index(cfg)
        if args.raw_runs > 0:
            try:
                ix["raw"] = measure_raw(cfg, args.query, logs)
            except subprocess.CalledProcessError:
                ix["notes"] = [f"the raw measure failed: see {logs}/raw-{args.variant}.log"]
        side = run_ours(
            cfg, query=args.query, plan=plan, logs=logs, ready_timeout_s=args.ready_timeout
        )
        ix.update(side.to_json())
        results["checks"] = scale_checks(results["indexes"])
        write_results(results, args.out, render_markdown)
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
