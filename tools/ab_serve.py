"""`make ab-serve`: two faq-serve settings compared in one sitting, alternated burst by burst.

This machine's timings drift by 20% and more between runs, sometimes within minutes: two
`make bench-peer` runs one after the other cannot tell a 5% change of the request path from
noise. Here both sides run at once, each a `faq-serve` on its own copy of the bench index
(embedded Qdrant locks its directory; copies made alike, so that neither side is favoured by
where its files lie), and short wrk bursts alternate between them, A B, then B A: a side is
idle while the other is loaded, and drift reaches both alike. An A/A run (`--b` with a default
value) reads about 1.00; a first version, with A on the original directory and always first,
read 0.89. The figures are the median over the pairs of B / A (p50 latency and req/s), beside
each side's own medians and the means of the service's `faq_*_duration_seconds` histograms
read from /metrics at the end.

    .venv/bin/python -m tools.ab_serve --b FAQ_ORT_SPINNING=true \\
        [--a KEY=VALUE ...] [--concurrency 1] [--pairs 20] [--burst 2] [--variant int8]

Both sides inherit the calling shell's FAQ_ settings; `--a` and `--b` add or override some.
To compare code instead, `--b-tree DIR` runs B on the service code of another source tree (a
`git worktree add DIR <commit>`), put first on B's PYTHONPATH: the project's editable install
is found after it; the same virtual environment serves both.

`--querylog` is the query log's cost (`make bench-querylog`): A with `FAQ_QUERY_LOG=off`, B
with it on, a SQLite file of its own in the run's temporary directory; the report adds the
searches B's log kept and those it dropped (`faq_querylog_dropped_total`), so a log that fell
behind shows.

Results: `<out>/results.json` and `<out>/results.md`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tools.bench_peer import (
    OWN_SETTINGS,
    OursConfig,
    add_serve_options,
    build_index,
    faq_serve,
    fmt,
    parse_serve_args,
    report_head,
    sitting,
    write_results,
)
from tools.loadgen import WrkResult, histogram_means, json_post, run_wrk

SIDES = ("a", "b")


def setting(text: str) -> tuple[str, str]:
    """`KEY=VALUE` of a faq-serve setting (FAQ_...)."""
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("FAQ_") or key in OWN_SETTINGS:
        raise argparse.ArgumentTypeError(
            f"expected FAQ_KEY=VALUE, not one this tool sets itself: {text!r}"
        )
    return key, value


def summary(bursts: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, Any]:
    """Each side's medians and, over the pairs (A's burst i, B's burst i), the median B / A."""
    out: dict[str, Any] = {}
    for side in SIDES:
        out[side] = {
            "p50_ms": statistics.median(b["p50_ms"] for b in bursts[side]),
            "req_per_s": statistics.median(b["req_per_s"] for b in bursts[side]),
        }
    pairs = list(zip(bursts["a"], bursts["b"], strict=True))
    out["b_over_a"] = {
        key: statistics.median(b[key] / a[key] for a, b in pairs if a[key] > 0)
        for key in ("p50_ms", "req_per_s")
    }
    out["b_faster_p50_in"] = sum(b["p50_ms"] < a["p50_ms"] for a, b in pairs)
    out["pairs"] = len(pairs)
    return out


def querylog_lines(results: Mapping[str, Any]) -> list[str]:
    """A `--querylog` run's line: what B's log kept and dropped."""
    q = results.get("querylog")
    if not q:
        return []
    return [f"B's query log kept {q['logged']:,} searches and dropped {q['dropped']:,}.", ""]


def render_markdown(results: Mapping[str, Any]) -> str:
    s = results["summary"]
    detail = (
        f"{results['variant']}; wrk -t1 -c{results['concurrency']}, {results['pairs']} pairs of "
        f"{results['burst_s']:g} s bursts (A B, then B A), query `{results['query']}`, top_k "
        f"{results['top_k']}."
    )
    lines = [
        *report_head(
            "Two faq-serve settings, alternated burst by burst (`tools.ab_serve`)", results, detail
        ),
        "",
        "| side | settings | median p50 ms | median req/s | errors |",
        "|---|---|---:|---:|---:|",
    ]
    code = results.get("code") or {}
    for side in SIDES:
        given = results["settings"][side]
        shown = ", ".join(f"{k}={v}" for k, v in sorted(given.items())) or "(inherited only)"
        if code.get("b"):  # a code comparison: name each side's tree
            shown += f"; code {code[side]}"
        errors = sum(b["errors"] for b in results["bursts"][side])
        lines.append(
            f"| {side.upper()} | {shown} | {fmt(s[side]['p50_ms'], 3)} | "
            f"{fmt(s[side]['req_per_s'])} | {errors} |"
        )
    ratio = s["b_over_a"]
    lines += [
        "",
        f"Median over the pairs of B / A: p50 **{fmt(ratio['p50_ms'], 3)}**, req/s "
        f"**{fmt(ratio['req_per_s'], 3)}**; B's p50 lower in {s['b_faster_p50_in']} of "
        f"{s['pairs']} pairs.",
        "",
        *querylog_lines(results),
        "Means of the service's histograms at the end (ms):",
        "",
        "| histogram | A | B |",
        "|---|---:|---:|",
    ]
    means = results["histogram_means_ms"]
    for name in sorted(set(means["a"]) | set(means["b"])):
        lines.append(
            f"| {name} | {fmt(means['a'].get(name), 3)} | {fmt(means['b'].get(name), 3)} |"
        )
    return "\n".join(lines) + "\n"


def dropped_total(metrics_text: str) -> int:
    """The sum of `faq_querylog_dropped_total` over its reasons in a /metrics page."""
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(metrics_text)
            if family.name == "faq_querylog_dropped"
            for sample in family.samples
            if sample.name == "faq_querylog_dropped_total"
        )
    )


def querylog_counts(db: Path, base_url: str) -> dict[str, int]:
    """What B's query log kept (rows of faq_searches) and dropped, read after the load."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as r:
        dropped = dropped_total(r.read().decode("utf-8"))
    with sqlite3.connect(db) as conn:
        (kept,) = conn.execute("SELECT count(*) FROM faq_searches").fetchone()
    return {"logged": int(kept), "dropped": dropped}


def tree_commit(tree: Path) -> str:
    """The commit a source tree is at, marked `+changes` when it has uncommitted ones."""

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", "-C", str(tree), *cmd], capture_output=True, text=True)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "not a git tree"
    return head + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def burst(result: WrkResult) -> dict[str, float]:
    return {
        "p50_ms": result.latency_ms["p50"],
        "p99_ms": result.latency_ms["p99"],
        "req_per_s": round(result.req_per_s, 2),
        "errors": result.errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ab_serve", description=__doc__)
    parser.add_argument("--a", type=setting, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--b", type=setting, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--b-tree", type=Path, help="B runs the code of this source tree (a git worktree)"
    )
    parser.add_argument(
        "--querylog",
        action="store_true",
        help="A: FAQ_QUERY_LOG=off, B: a SQLite query log of its own (the log's cost)",
    )
    parser.add_argument("--concurrency", type=int, default=1)
    add_serve_options(parser, port=8771, out="artifacts/ab-serve", pairs=20, burst_s=2.0)
    args = parse_serve_args(parser, argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    given = {"a": dict(args.a), "b": dict(args.b)}
    if args.querylog:
        if "FAQ_QUERY_LOG" in given["a"] or "FAQ_QUERY_LOG" in given["b"]:
            parser.error("--querylog sets FAQ_QUERY_LOG on both sides itself")
        given["a"]["FAQ_QUERY_LOG"] = "off"
        given["b"]["FAQ_QUERY_LOG"] = "sqlite (a file of its own)"
    if args.b_tree is not None and not (args.b_tree / "app" / "__init__.py").is_file():
        parser.error(f"--b-tree {args.b_tree}: no app/ package there")
    if given["a"] == given["b"] and args.b_tree is None:
        parser.error("A and B run the same code and settings: give --b KEY=VALUE or --b-tree")

    qdrant = args.qdrant_root / f"qdrant-{args.variant}"
    base_cfg = OursConfig(args.model_dir, args.variant, args.faq, qdrant, args.port, args.top_k)
    build_index(base_cfg)  # skipped when unchanged
    request = json_post("/search", {"query": args.query, "top_k": args.top_k})
    bursts: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory(prefix="ab-serve-") as tmp, ExitStack() as stack:
        urls: dict[str, str] = {}
        for i, side in enumerate(SIDES):
            # Each side reads its own copy (embedded Qdrant allows one process per directory),
            # made the same way, so that neither side is favoured by where its files lie.
            path = Path(tmp) / side / qdrant.name
            shutil.copytree(qdrant, path)
            cfg = OursConfig(
                args.model_dir, args.variant, args.faq, path, args.port + i, args.top_k
            )
            env = dict(given[side])
            if args.querylog and side == "b":
                env["FAQ_QUERY_LOG"] = f"sqlite:///{Path(tmp) / side / 'querylog.db'}"
            if side == "b" and args.b_tree is not None:
                env["PYTHONPATH"] = str(args.b_tree.resolve())
            server = faq_serve(cfg, Path(tmp) / f"faq-serve-{side}.log", env)
            stack.enter_context(server.start(args.ready_timeout))
            urls[side] = f"http://127.0.0.1:{cfg.port}"

        def load(side: str, seconds: float) -> WrkResult:
            return run_wrk(
                urls[side] + "/search",
                [request],
                concurrency=args.concurrency,
                duration_s=seconds,
                max_requests=10**9,
            )

        for side in SIDES:
            load(side, args.warmup)
        for i in range(args.pairs):
            # A B, then B A: a burst that follows another (a warm machine) is not always B's.
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                bursts[side].append(burst(load(side, args.burst)))
            a, b = bursts["a"][-1], bursts["b"][-1]
            print(
                f"pair {i + 1}/{args.pairs}: p50 A {a['p50_ms']:.3f} ms, B {b['p50_ms']:.3f} ms",
                flush=True,
            )
        means = {side: histogram_means(urls[side]) for side in SIDES}
        if args.querylog:
            time.sleep(2.0)  # the writer's last batch
            logged = querylog_counts(Path(tmp) / "b" / "querylog.db", urls["b"])

    results = {
        **sitting(parser.prog, argv, args.query),
        "warmup_s": args.warmup,
        "variant": args.variant,
        "concurrency": args.concurrency,
        "pairs": args.pairs,
        "burst_s": args.burst,
        "top_k": args.top_k,
        "settings": given,
        "code": {
            "a": f"{Path.cwd()} ({tree_commit(Path.cwd())})",
            "b": None
            if args.b_tree is None
            else f"{args.b_tree.resolve()} ({tree_commit(args.b_tree)})",
        },
        "bursts": bursts,
        "summary": summary(bursts),
        "histogram_means_ms": means,
    }
    if args.querylog:
        results["querylog"] = logged
    write_results(results, args.out, render_markdown)
    print(json.dumps(results["summary"]["b_over_a"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
