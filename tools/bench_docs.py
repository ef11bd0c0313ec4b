"""Write docs/benchmarks.md, and the README's table of current figures, from the result files.

    python -m tools.bench_docs           # rewrite both
    python -m tools.bench_docs --check   # exit 1 when either differs from the result files now

Reads every JSON result under docs/bench and docs/gpu (what `make bench-peer`, `c1-ratio`,
`bench-100k`, `soak`, `ab-serve`, `bench-querylog`, `demo-loop` and `gpu-check` write), keeps
the latest run of each kind (by the time the run started, else by file name), and
docs/eval/summary.json (`make eval-task`). A new result is a new file there plus a rerun of this
tool, not prose: the figures on both pages come from the files only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tools.docgen import ROOT, cell, replace_between, write_or_check

PAGE = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
RESULT_DIRS = (ROOT / "docs" / "bench", ROOT / "docs" / "gpu")
EVAL_SUMMARY = ROOT / "docs" / "eval" / "summary.json"
COMMAND = "python -m tools.bench_docs"

Json = dict[str, Any]


@dataclass(frozen=True)
class Result:
    kind: str
    path: Path
    data: Json

    @property
    def started(self) -> str:
        return str(self.data.get("started_at") or self.data.get("started") or "")

    @property
    def order(self) -> tuple[float, str]:
        try:
            stamp = datetime.fromisoformat(self.started).timestamp()
        except ValueError:
            stamp = 0.0
        return stamp, self.path.as_posix()

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def link(self) -> str:
        """A link from a page in docs/."""
        return f"[`{self.rel}`]({self.path.relative_to(ROOT / 'docs').as_posix()})"


def _gpu_serving_key(data: Json) -> str | None:
    serving = data.get("steps", {}).get("serving", {})
    cuda = serving.get("cuda_fp16")
    if not isinstance(cuda, dict) or not cuda.get("levels"):
        return None
    workers = cuda.get("settings", {}).get("FAQ_WORKERS", "1")
    return f"gpu-serving {workers}{' mps' if serving.get('mps') else ''}"


def kinds_of(data: Json) -> list[str]:
    """The kinds of result one file holds (a gpu-check report holds several)."""
    if "variants" in data and "indexes" not in data:
        return ["bench-peer"]
    if "indexes" in data:
        return ["bench-100k"]
    if "loop" in data:
        return ["demo-loop"]
    if "bursts" in data:
        return ["ab-serve querylog" if "querylog" in data else "ab-serve"]
    if "pairs" in data and isinstance(data.get("summary"), dict):
        return [f"c1-ratio {data.get('variant', '')}".strip()]
    if "rss_growth_pct" in data:
        return ["soak"]
    if "faults" in data:
        return ["chaos"]
    if "steps" in data:
        steps = data["steps"]
        found = [key for key in ("parity", "gpu_tests", "training") if key in steps]
        serving = _gpu_serving_key(data)
        if serving:
            found.append(serving)
        if isinstance(steps.get("serving", {}).get("cpu_int8"), dict):
            found.append("gpu-host-cpu")
        return [f"gpu-check {k}" if not k.startswith("gpu-") else k for k in found]
    return ["other"]


def load_results(dirs: Iterable[Path] = RESULT_DIRS) -> dict[str, Result]:
    """The latest result of each kind (`other` collects files of no known kind)."""
    latest: dict[str, Result] = {}
    for path in sorted(p for d in dirs if d.exists() for p in d.rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for found in kinds_of(data):
            kind = f"other {path.as_posix()}" if found == "other" else found
            result = Result(kind, path, data)
            if kind not in latest or result.order >= latest[kind].order:
                latest[kind] = result
    return latest


def _n(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _mb(mb: float) -> str:
    return f"{mb:,.0f} MB"


def _level(levels: list[Json], concurrency: int) -> Json | None:
    return next((lv for lv in levels if lv.get("concurrency") == concurrency), None)


def _source(result: Result) -> str:
    host = result.data.get("host", {})
    cpus = f"{host['cpus']} CPUs, " if "cpus" in host else ""
    when = f"started {result.started}, " if result.started else ""
    return f"Source: {result.link} ({cpus}{when}`{result.data.get('command', '')}`)."


def _checks(data: Json) -> list[str]:
    return [
        f"- {'pass' if c.get('pass') else '**FAIL**'}: {c['check']} (measured {c['value']})"
        for c in data.get("checks", [])
    ]


# --- the README's table ----------------------------------------------------------------------


def figure_rows(results: dict[str, Result], summary: Json | None) -> list[tuple[str, str, str]]:
    """(what, figure, command) per line of the README's table, for what the files hold."""
    rows: list[tuple[str, str, str]] = []
    if summary:
        shopper = summary.get("shopper_test", {})
        if "shop" in shopper and "base" in shopper:
            rows.append(
                (
                    f"Shoppers' questions, right topic first (R@1, test split, "
                    f"{shopper['shop']['n']} queries, 17 languages)",
                    f"trained model {_pct(shopper['shop']['r1'])}, "
                    f"base model {_pct(shopper['base']['r1'])}",
                    "`make eval-task` (after `make train train-ablations`)",
                )
            )
        control = summary.get("controls", {}).get("debian_en", {})
        if "shop" in control and "base" in control:
            rows.append(
                (
                    "English control: Debian FAQ questions, R@1",
                    f"trained {_pct(control['shop']['r1'])}, base {_pct(control['base']['r1'])}",
                    "`make eval-task`",
                )
            )
    peer = results.get("bench-peer")
    if peer and "int8" in peer.data["variants"]:
        v = peer.data["variants"]["int8"]
        ours = _level(v["sides"]["ours"]["levels"], 32)
        ratio = next((r for r in v.get("ratios", []) if r["concurrency"] == 32), None)
        if ours and ratio:
            rows.append(
                (
                    "Throughput, 2 CPU cores, int8, 32 connections",
                    f"{_n(ours['req_per_s'])} req/s, p99 {_n(ours['latency_ms']['p99'])} ms: "
                    f"{ratio['req_per_s']:.2f}x infinity-emb on the same machine",
                    "`make bench-peer`",
                )
            )
    c1 = results.get("c1-ratio int8")
    if c1:
        s = c1.data["summary"]
        rows.append(
            (
                "A lone query: /search p50 over the in-process cost (int8)",
                f"{s['ratio_median']:.2f}x ({_n(s['ours_p50_ms'], 2)} ms against "
                f"{_n(s['raw_p50_ms'], 2)} ms)",
                "`make c1-ratio`",
            )
        )
    big = results.get("bench-100k")
    if big:
        idx = big.data["indexes"]
        large, sample = idx["large"], idx["sample"]
        l32, s32 = _level(large["levels"], 32), _level(sample["levels"], 32)
        if l32 and s32:
            rows.append(
                (
                    f"{large['entries']:,} FAQ entries, embedded index, 32 connections",
                    f"{l32['req_per_s'] / s32['req_per_s']:.2f}x the sample index's req/s; "
                    f"service RSS {_mb(large['rss_mb_after'])}",
                    "`make bench-100k`",
                )
            )
    soak = results.get("soak")
    if soak:
        d = soak.data
        rows.append(
            (
                f"Soak: {d['seconds'] / 60:.0f} min at c={d['concurrency']}, valid and invalid "
                "requests"
                + (", an embeddings flood, a reindex a minute" if d.get("reindex_jobs") else ""),
                f"{d['requests']:,} requests, {d.get('undocumented_5xx', d['server_errors_5xx'])} "
                f"5xx other than 503, RSS {d['rss_growth_pct']:+.2f} %",
                "`make soak`",
            )
        )
    chaos = results.get("chaos")
    if chaos:
        faults = chaos.data["faults"]
        lost = sum(f["lost_writes"] for f in faults)
        late = sum(f["past_deadline"] for f in faults)
        slowest = max((f["recovery_s"] or 0.0) for f in faults)
        rows.append(
            (
                f"Faults injected ({len(faults)}: store slow, hanging, raising; SIGKILL; disk "
                "full; floods)",
                f"{lost} writes lost, {late} answers past the deadline, "
                f"recovery <= {slowest:.1f} s",
                "`make chaos`",
            )
        )
    gpu = _best_gpu(results)
    if gpu:
        label, level = gpu
        rows.append(
            (
                f"One GPU ({label}), fp16, 32 connections",
                f"{_n(level['req_s'], 0)} req/s, p99 {_n(level['p99_ms'])} ms",
                "`make gpu-check`",
            )
        )
    return rows


def _gpu_name(data: Json) -> str:
    gpu = str(data.get("steps", {}).get("environment", {}).get("gpu", "GPU"))
    name = gpu.split(":", 1)[-1].split("(UUID")[0].strip()
    return name.removeprefix("NVIDIA ").strip() or "GPU"


def _gpu_label(result: Result) -> str:
    serving = result.data["steps"]["serving"]
    workers = serving["cuda_fp16"].get("settings", {}).get("FAQ_WORKERS", "1")
    mps = ", under MPS" if serving.get("mps") else ""
    return f"{_gpu_name(result.data)}, {workers} workers{mps}"


def _best_gpu(results: dict[str, Result]) -> tuple[str, Json] | None:
    """The c=32 level of the serving run that served the most at c=32."""
    best: tuple[str, Json] | None = None
    for kind, result in results.items():
        if not kind.startswith("gpu-serving"):
            continue
        level = _level(result.data["steps"]["serving"]["cuda_fp16"]["levels"], 32)
        if level and (best is None or level["req_s"] > best[1]["req_s"]):
            best = (_gpu_label(result), level)
    return best


def figures_table(results: dict[str, Result], summary: Json | None) -> str:
    lines = [
        "<!-- Generated by `python -m tools.bench_docs` from docs/bench, docs/gpu and",
        "     docs/eval/summary.json; do not edit by hand. -->",
        "| what | figure | command |",
        "|---|---|---|",
    ]
    lines += [f"| {cell(a)} | {cell(b)} | {c} |" for a, b, c in figure_rows(results, summary)]
    return "\n".join(lines)


# --- docs/benchmarks.md ----------------------------------------------------------------------


def _bench_peer(r: Result) -> list[str]:
    out = [_source(r), ""]
    for variant, v in r.data["variants"].items():
        raw = v.get("raw", {})
        out += [
            f"### {variant}",
            "",
            f"Raw in-process cost of one search (tokenise, model, search, answers): p50 "
            f"{_n(raw.get('p50_ms', 0), 2)} ms. The model alone, batch of "
            f"{v.get('model_batch', {}).get('batch', '?')}: "
            f"{_n(v.get('model_batch', {}).get('sentences_per_s', 0), 0)} sentences/s.",
            "",
            "| system | c | req/s | p50 ms | p99 ms | errors | CPU ms/req |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for side in ("peer", "ours"):
            s = v["sides"][side]
            for lv in s["levels"]:
                out.append(
                    f"| {s['system']} {s['route']} | {lv['concurrency']} | {_n(lv['req_per_s'])} "
                    f"| {_n(lv['latency_ms']['p50'], 2)} | {_n(lv['latency_ms']['p99'], 2)} "
                    f"| {lv['errors']} | {lv.get('server_cpu_ms_per_request', '')} |"
                )
        out += ["", *_checks(v), ""]
    return out


def _c1(r: Result) -> list[str]:
    s = r.data["summary"]
    return [
        _source(r),
        "",
        f"Median over {s['pairs']} pairs of /search p50 / raw in-process p50: "
        f"**{s['ratio_median']:.2f}** (min {s['ratio_min']:.2f}, max {s['ratio_max']:.2f}); "
        f"{s['pairs_within_target']} of {s['pairs']} pairs at or under {s['target']}. "
        f"Medians: raw {_n(s['raw_p50_ms'], 3)} ms, /search {_n(s['ours_p50_ms'], 3)} ms.",
        "",
    ]


def _bench_100k(r: Result) -> list[str]:
    out = [
        _source(r),
        "",
        "| index | entries | raw p50 ms | c=1 req/s · p50 / p99 ms | c=32 req/s · p50 / p99 ms "
        "| RSS after |",
        "|---|---:|---:|---|---|---:|",
    ]
    for name, idx in r.data["indexes"].items():
        cols = []
        for c in (1, 32):
            lv = _level(idx["levels"], c)
            cols.append(
                f"{_n(lv['req_per_s'])} · {_n(lv['latency_ms']['p50'], 2)} / "
                f"{_n(lv['latency_ms']['p99'], 2)}"
                if lv
                else ""
            )
        out.append(
            f"| {name} | {idx['entries']:,} | {_n(idx['raw']['p50_ms'], 2)} | {cols[0]} "
            f"| {cols[1]} | {_mb(idx['rss_mb_after'])} |"
        )
    return [*out, "", *_checks(r.data), ""]


def _soak(r: Result) -> list[str]:
    d = r.data
    statuses = ", ".join(f"{k}: {v:,}" for k, v in d["statuses"].items())
    sockets = sum(d["socket_errors"].values())
    out = [
        f"Source: {r.link}.",
        "",
        f"{d['requests']:,} requests in {d['seconds']:.0f} s at c={d['concurrency']} "
        f"({statuses}); **{d.get('undocumented_5xx', d['server_errors_5xx'])} 5xx other than "
        f"503, {sockets} socket errors**; RSS {d['rss_baseline_mb']} MB after "
        f"{d['rss_baseline_s']:.0f} s, {d['rss_end_mb']} MB at the end "
        f"({d['rss_growth_pct']:+.2f} %): {'PASS' if d.get('pass') else '**FAIL**'}.",
        "",
    ]
    if d.get("reindex_jobs") is not None:
        out.insert(
            -1,
            f"Beside it: embeddings flood answers {d['flood_statuses']}; reindex jobs "
            f"{d['reindex_jobs']}.",
        )
    return out


def _chaos(r: Result) -> list[str]:
    cols = ("sent", "2xx", "4xx", "5xx", "lost_writes", "past_deadline", "recovery_s")
    out = [
        f"Source: {r.link}. Past the deadline = answered after {r.data['answer_limit_s']} s.",
        "",
        "| fault | " + " | ".join(cols) + " | notes |",
        "|---|" + "---:|" * len(cols) + "---|",
    ]
    for f in r.data["faults"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in f.get("statuses", {}).items())
        notes = "; ".join(x for x in (f"statuses {statuses}", f["notes"]) if x)
        out.append(f"| {f['name']} | " + " | ".join(str(f[c]) for c in cols) + f" | {notes} |")
    return [*out, ""]


def _ab(r: Result) -> list[str]:
    d = r.data
    s = d["summary"]
    code = d.get("code", {})
    settings = d.get("settings", {})

    def side(key: str) -> str:
        what = [f"{k}={v}" for k, v in settings.get(key, {}).items()]
        if code.get(key):
            what.append(f"code {code[key]}")
        return ", ".join(what) or "defaults"

    return [
        _source(r),
        "",
        f"A: {side('a')}; B: {side('b')}; {d['pairs']} pairs at c={d['concurrency']}. "
        f"Median of B / A over the pairs: p50 **{s['b_over_a']['p50_ms']:.3f}**, req/s "
        f"**{s['b_over_a']['req_per_s']:.3f}**; B's p50 lower in {s['b_faster_p50_in']} of "
        f"{s['pairs']} pairs.",
        "",
    ]


def _querylog(r: Result) -> list[str]:
    d = r.data
    ratio = d["summary"]["b_over_a"]
    q = d["querylog"]
    within = "within" if ratio["req_per_s"] >= 0.95 else "**not within**"
    a_rates = [b["req_per_s"] for b in d["bursts"]["a"]]
    return [
        f"{d['variant']}, c={d['concurrency']}, {d['pairs']} pairs of {d['burst_s']:g} s: req/s "
        f"with the log on / off **{ratio['req_per_s']:.3f}** ({within} 5 %), p50 "
        f"{ratio['p50_ms']:.3f}; the log kept {q['logged']:,} searches and dropped "
        f"{q['dropped']:,}; the log-off side's own bursts ranged {min(a_rates):,.0f}-"
        f"{max(a_rates):,.0f} req/s. {_source(r)}",
        "",
    ]


def _demo_loop(r: Result) -> list[str]:
    d = r.data["loop"]
    before, after = d["r1_before"], d["r1_after"]
    top = d["gaps"][: 2 * len(d["missing_topics"])]
    gaps = ", ".join(f"{g['missing_topic'] or '*other*'} ({g['size']})" for g in top)
    rp = d["replayed"]
    train = d["train"]
    steps = "; ".join(
        f"{s.get('stage')} {s.get('steps')} steps at batch {s.get('batch_size')}"
        for s in train.get("stages") or []
    )
    return [
        _source(r),
        "",
        f"Replayed {rp['searches']:,} searches ({rp.get('dev_searches', 0)} shopper dev queries, "
        f"{rp.get('missing_searches', 0)} on topics the FAQ lacks), {rp['clicks']} clicked. The "
        f"{len(top)} largest gaps in `/admin/analytics`, each named by the missing topic of most "
        f"of its examples (searches): {gaps}. Exported {d['export'].get('written', 0)} training "
        f"pairs; {steps} in {train.get('time_s', 0):.0f} s; served through the golden "
        f"gate (`{d['golden']}`). Shopper test "
        f"split R@1 through the service ({before['n']} queries): **{_pct(before['r1'])} "
        f"before, {_pct(after['r1'])} after**; {d['total_seconds'] / 60:.1f} min in all.",
        "",
    ]


def _gpu(results: dict[str, Result]) -> list[str]:
    out: list[str] = []
    serving = sorted(
        (r for k, r in results.items() if k.startswith("gpu-serving")),
        key=lambda r: r.order,
        reverse=True,
    )
    if serving:
        out += [
            "`/search`, fp16 on CUDA, the README's 8 mixed-language queries in turn; req/s · "
            "p50 / p99 ms (GPU busy %, nvidia-smi mean).",
            "",
            "| run | c | req/s · p50 / p99 ms | GPU busy | source |",
            "|---|---:|---|---:|---|",
        ]
        for r in serving:
            for lv in r.data["steps"]["serving"]["cuda_fp16"]["levels"]:
                out.append(
                    f"| {_gpu_label(r)} | {lv['concurrency']} | {_n(lv['req_s'])} · "
                    f"{_n(lv['p50_ms'], 2)} / {_n(lv['p99_ms'], 2)} | "
                    f"{lv.get('gpu_util_mean', '')} % | {r.link} |"
                )
        out.append("")
    cpu = results.get("gpu-host-cpu")
    if cpu:
        c = cpu.data["steps"]["serving"]["cpu_int8"]
        workers = c.get("settings", {}).get("FAQ_WORKERS", "1")
        cpus = cpu.data["steps"].get("environment", {}).get("cpus", "?")
        levels = "; ".join(
            f"c={lv['concurrency']}: {_n(lv['req_s'])} req/s · {_n(lv['p50_ms'], 2)} / "
            f"{_n(lv['p99_ms'], 2)} ms"
            for lv in c["levels"]
        )
        out += [
            f"The same host's {cpus} CPU cores, int8, {workers} workers: {levels} ({cpu.link}).",
            "",
        ]
    parity = results.get("gpu-check parity")
    if parity:
        p = parity.data["steps"]["parity"]
        out += [
            f"Parity ({p.get('queries')} shopper queries against {p.get('faq_entries')} FAQ "
            f"entries; {parity.link}):",
            "",
            "| pair | cosine mean | cosine min | top-5 overlap | same top 1 |",
            "|---|---:|---:|---:|---:|",
        ]
        for pair, m in p.items():
            if isinstance(m, dict) and "cosine_mean" in m:
                out.append(
                    f"| {pair.replace('_vs_', ' vs ').replace('_', ' ')} | {m['cosine_mean']:.6f} "
                    f"| {m['cosine_min']:.6f} | {m['top5_overlap_mean']:.4f} "
                    f"| {_pct(m['top1_agreement'])} |"
                )
        out.append("")
    tests = results.get("gpu-check gpu_tests")
    if tests:
        t = tests.data["steps"]["gpu_tests"]
        out += [f"`pytest -m gpu`: {t.get('summary') or t.get('status')} ({tests.link}).", ""]
    train = results.get("gpu-check training")
    if train:
        t = train.data["steps"]["training"]
        stages = "; ".join(
            f"{s['stage']} {s['steps']} steps at {_n(s['samples_per_s'])} samples/s "
            f"(batch {s['batch_size']})"
            for s in t.get("stages", [])
        )
        out += [
            f"Training probe (`{t.get('config')}`, {t.get('autocast')} autocast, "
            f"{t.get('base_weights', 'real weights')}: speed and memory only): {stages}; peak GPU "
            f"memory {_mb(t.get('peak_gpu_memory_mb', 0))}, {t.get('time_s')} s in all "
            f"({train.link}).",
            "",
        ]
    return out


SECTIONS: tuple[tuple[str, str, str, Callable[[Result], list[str]]], ...] = (
    (
        "bench-peer",
        "`make bench-peer`: faq-serve against infinity-emb",
        "faq-serve's `POST /search` (encode, search, answer) beside infinity-emb's "
        "`/embeddings` (encode only) on the same machine, in turn, with wrk; targets: c=32 "
        "req/s >= 1.2x the peer, c=32 p99 <= 100 ms, c=1 p50 <= 1.3x the raw in-process p50.",
        _bench_peer,
    ),
    (
        "c1-ratio int8",
        "`make c1-ratio`: a lone query, int8",
        "The c=1 target read in alternating pairs (raw in-process measure, then 5 s of wrk "
        "-c1), so that the machine's drift reaches both sides alike.",
        _c1,
    ),
    (
        "c1-ratio fp32",
        "`make c1-ratio C1_RATIO_ARGS='--variant fp32'`: a lone query, fp32",
        "",
        _c1,
    ),
    (
        "bench-100k",
        "`make bench-100k`: a 100,000-entry FAQ",
        "A synthetic FAQ indexed (int8) and served beside the sample FAQ, in turn; targets: "
        "c=1 p50 <= 2x and c=32 req/s >= 0.8x the sample index's.",
        _bench_100k,
    ),
    (
        "soak",
        "`make soak`: 10 minutes under load",
        "int8, the sample index, c=32, two valid requests for each invalid one, an embeddings "
        "flood beside them and a reindex every minute; fails on any 5xx but a 503, a socket "
        "error, a reindex that did not succeed or RSS growth >= 5 %.",
        _soak,
    ),
    (
        "chaos",
        "`make chaos`: faults injected",
        "Per fault: requests sent and answered, writes acknowledged and then missing, answers "
        "past the deadline, seconds from the fault's end to the first good answer.",
        _chaos,
    ),
    (
        "ab-serve",
        "`make ab-serve`: the latest A/B",
        "Two settings or two versions of the code served at once, wrk bursts alternated.",
        _ab,
    ),
    (
        "ab-serve querylog",
        "`make bench-querylog`: the query log's cost",
        "faq-serve with `FAQ_QUERY_LOG=off` (A) and with a SQLite log of its own (B), served at "
        "once, wrk bursts alternated A B, B A; the median over the pairs of B / A. Target: B's "
        "req/s within 5 % of A's.",
        _querylog,
    ),
    (
        "demo-loop",
        "`make demo-loop`: the learning loop",
        "The shipped model served with the query log on; the shopper dev split and questions on "
        "topics the FAQ lacks replayed with simulated clicks; the log exported, a short "
        "fine-tune, the golden-query gate, the new model served "
        "([training.md](training.md#the-learning-loop-make-demo-loop)).",
        _demo_loop,
    ),
)


def render_page(results: dict[str, Result], summary: Json | None) -> str:
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m tools.bench_docs` from the result files in docs/bench,",
        "     docs/gpu and docs/eval; do not edit by hand. -->",
        "",
        "The latest run of each benchmark, read from its result file. To update a figure, run",
        "the command on a quiet machine, copy its `results.json` (or `result.json`,",
        "`report.json`) into `docs/bench/` (CPU) or `docs/gpu/` (GPU) under a new name, delete",
        "the run it replaces, and run `python -m tools.bench_docs`: this page and the README's",
        "table follow. What each command measures and its options:",
        "[operations.md](operations.md#load-tools). Earlier runs are in git history.",
        "",
        "## Current figures",
        "",
        figures_table(results, summary),
        "",
    ]
    for kind, title, about, render in SECTIONS:
        out += [f"## {title}", ""]
        if about:
            out += [about, ""]
        result = results.get(kind)
        out += render(result) if result else ["No result file yet.", ""]
    out += [
        "## `make gpu-check`: one GPU",
        "",
        "On a CUDA host, at most 10 minutes: the `gpu`-marked tests, fp16 against fp32 on CUDA,",
        "faq-serve (fp16) under wrk with nvidia-smi sampling, the CPU beside it, and a bf16",
        "training probe. Each part below is from the latest report that has it.",
        "",
    ]
    gpu = _gpu(results)
    out += gpu or ["No result file yet.", ""]
    others = [r for k, r in results.items() if k.startswith("other ")]
    if others:
        out += ["## Other result files", "", *[f"- {r.link}" for r in others], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    args = parser.parse_args(argv)
    results = load_results()
    summary = json.loads(EVAL_SUMMARY.read_text("utf-8")) if EVAL_SUMMARY.exists() else None
    rc = write_or_check(PAGE, render_page(results, summary), check=args.check, command=COMMAND)
    readme = README.read_text(encoding="utf-8")
    new_readme = replace_between(readme, "figures", figures_table(results, summary))
    return rc | write_or_check(README, new_readme, check=args.check, command=COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
