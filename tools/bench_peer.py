"""`make bench-peer`: our `POST /search` side by side with infinity-emb's `/embeddings`.

For each model variant (int8, fp32), in turn and never at the same time:

1. the peer: infinity-emb (its own virtual environment, optimum engine) started from inside its
   model folder (`--model-id .`, `--pooling-method mean`, DO_NOT_TRACK=1, HF_HUB_OFFLINE=1);
   its vector for the query (with our query prefix) is checked against ours (cosine > 0.99)
   before any load; then a short warm-up and each concurrency level;
2. ours: the sample FAQ indexed for that variant, the raw in-process cost measured with the
   service idle (`faq-bench --raw-runs`: tokenise + ONNX Runtime + the route's search and
   answers, the service's own loader and answering; a bare vector search alongside, the raw
   measure of reports before commit 617bb9d), then `faq-serve`, the same warm-up and levels.

Both sides get the same load generator (wrk, one thread, `c` keep-alive connections), the same
query on every request, the same bounds per level (seconds and responses), and are metered the
same way (server CPU seconds of the whole process tree from /proc). The results go to
`<out>/results.json` and `<out>/results.md`, with ours / peer ratios and the issue's targets.

    .venv/bin/python -m tools.bench_peer [--variants int8,fp32] [--levels 1,8,32,64]
        [--duration 15] [--max-requests 20000] [--sides peer,ours]

A smoke run: `--levels 1 --duration 3 --variants int8`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.loadgen import (
    Request,
    Server,
    ServerError,
    WrkResult,
    json_post,
    post_json,
    run_wrk,
    sample_tree,
)

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEFAULT_MODEL_DIR = Path("artifacts/onnx/multilingual-e5-small")
PEER_NAME = "multilingual-e5-small"
COSINE_MIN = 0.99
# Settings this tool sets itself for faq-serve (the others come from the calling shell).
OWN_SETTINGS = frozenset(
    {"FAQ_MODEL_DIR", "FAQ_MODEL_VARIANT", "FAQ_INDEX_PATH", "FAQ_HOST", "FAQ_PORT"}
    | {"FAQ_LOG_LEVEL"}
)


def inherited_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The FAQ_ settings faq-serve inherits from the caller (recorded; never keys or secrets)."""
    secret = ("KEY", "SECRET", "TOKEN", "PASSWORD")
    return {
        k: v
        for k, v in sorted(environ.items())
        if k.startswith("FAQ_") and k not in OWN_SETTINGS and not any(w in k for w in secret)
    }


# --- results -------------------------------------------------------------------------------


@dataclass
class Level:
    """One concurrency level: what wrk saw and what the server's processes spent."""

    wrk: WrkResult
    server_cpu_s: float
    load_1m_after: float | None = None  # the host's 1-minute load average: a busy host shows

    def to_json(self) -> dict[str, Any]:
        out = self.wrk.to_json()
        out["server_cpu_s"] = round(self.server_cpu_s, 2)
        out["load_1m_after"] = self.load_1m_after
        out["server_cpu_ms_per_request"] = (
            round(self.server_cpu_s * 1000 / self.wrk.ok, 3) if self.wrk.ok else None
        )
        return out


@dataclass
class SideResult:
    system: str
    route: str
    ready_s: float = 0.0
    levels: list[Level] = field(default_factory=list)
    rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "route": self.route,
            "ready_s": self.ready_s,
            "rss_mb_after": self.rss_mb,
            "levels": [lv.to_json() for lv in self.levels],
            "notes": self.notes,
        }


def level_by_c(levels: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(lv["concurrency"]): lv for lv in levels}


def target(
    check: str, value: float | None, *, at_most: float | None = None, at_least: float | None = None
) -> dict[str, Any]:
    """One line of a report's target list: the figure and whether it is within its bound
    (a missing figure never passes)."""
    passed = value is not None
    if value is not None and at_most is not None:
        passed = value <= at_most
    if value is not None and at_least is not None:
        passed = value >= at_least
    return {"check": check, "value": value, "pass": passed}


def ratio_of(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def ratios(
    ours: Sequence[Mapping[str, Any]], peer: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """ours / peer per concurrency level both sides ran: req/s (higher is better for us), and
    p50 / p99 latency (lower is better for us)."""
    mine, theirs = level_by_c(ours), level_by_c(peer)
    out = []
    for c in sorted(set(mine) & set(theirs)):
        a, b = mine[c], theirs[c]
        out.append(
            {
                "concurrency": c,
                "req_per_s": ratio_of(a["req_per_s"], b["req_per_s"]),
                "p50": ratio_of(a["latency_ms"]["p50"], b["latency_ms"]["p50"]),
                "p99": ratio_of(a["latency_ms"]["p99"], b["latency_ms"]["p99"]),
            }
        )
    return out


def checks(variant: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that this variant's figures decide (None = not measured here)."""
    sides = variant.get("sides", {})
    ours = level_by_c(sides.get("ours", {}).get("levels", []))
    peer = level_by_c(sides.get("peer", {}).get("levels", []))
    raw = variant.get("raw") or {}
    out: list[dict[str, Any]] = []
    if 32 in ours and 32 in peer:
        ratio = ratio_of(ours[32]["req_per_s"], peer[32]["req_per_s"])
        out.append(target("c=32 req/s ours / peer >= 1.2", ratio, at_least=1.2))
    if 32 in ours:
        p99 = ours[32]["latency_ms"]["p99"]
        out.append(target("c=32 p99 ours <= 100 ms", p99, at_most=100.0))
    if 1 in ours and raw.get("p50_ms"):
        ratio = ratio_of(ours[1]["latency_ms"]["p50"], raw["p50_ms"])
        out.append(target("c=1 p50 ours / raw in-process p50 <= 1.3", ratio, at_most=1.3))
    for name, levels in (("ours", ours), ("peer", peer)):
        errors = sum(int(lv["errors"]) for lv in levels.values())
        if levels:
            out.append(target(f"{name}: no errors", errors, at_most=0))
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The human-readable report: per variant one table of both systems, ratios, checks."""
    lines = [
        "# faq-serve vs infinity-emb (`make bench-peer`)",
        "",
        f"Command: `{results['command']}`  ",
        f"Host: {results['host']['cpus']} CPUs, {results['host']['platform']}; "
        f"{results['started_at']}; wrk -t1, one query on every request: "
        f"`{results['query']}`; each level at most {fmt(results['duration_s'])} s and "
        f"{results['max_requests']} responses, after a {fmt(results['warmup_s'])} s warm-up.",
        "",
    ]
    for variant, v in results["variants"].items():
        lines += [f"## {variant}", ""]
        parity = v.get("parity")
        if parity:
            lines.append(
                f"Peer vector vs ours for the query: cosine {fmt(parity.get('cosine'), 5)} "
                f"({'ok' if parity.get('ok') else 'FAILED'}, needs > {COSINE_MIN})."
            )
        raw = v.get("raw")
        if raw:
            lines.append(
                f"Raw in-process (tokenise + ORT + the route's search and answers, "
                f"{raw['runs']} runs, service idle): p50 {fmt(raw['p50_ms'], 2)} ms, "
                f"p99 {fmt(raw['p99_ms'], 2)} ms; with a bare vector search instead (no "
                f"lexicon, grouping or abstain): p50 {fmt(raw.get('vector_p50_ms'), 2)} ms."
            )
        batch = v.get("model_batch")
        if batch:
            lines.append(
                f"The model alone (ONNX Runtime, batch {batch['batch']} of the query): "
                f"{fmt(batch['batch_ms_p50'], 1)} ms a batch, "
                f"{fmt(batch['sentences_per_s'], 0)} sentences/s."
            )
        lines += [
            "",
            "| system | c | req/s | p50 ms | p90 ms | p99 ms | errors | server CPU s "
            "| CPU ms/req | p50 / raw |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for side in ("peer", "ours"):
            s = v.get("sides", {}).get(side)
            if not s:
                continue
            for lv in s["levels"]:
                lat = lv["latency_ms"]
                vs_raw = ratio_of(lat["p50"], (raw or {}).get("p50_ms")) if side == "ours" else None
                lines.append(
                    f"| {s['system']} {s['route']} | {lv['concurrency']} | "
                    f"{fmt(lv['req_per_s'])} | {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | "
                    f"{fmt(lat['p99'], 2)} | {lv['errors']} | {fmt(lv['server_cpu_s'], 2)} | "
                    f"{fmt(lv['server_cpu_ms_per_request'], 2)} | {fmt(vs_raw, 2)} |"
                )
        if v.get("ratios"):
            lines += [
                "",
                "| c | req/s ours / peer | p50 ours / peer | p99 ours / peer |",
                "|---:|---:|---:|---:|",
            ]
            for r in v["ratios"]:
                lines.append(
                    f"| {r['concurrency']} | {fmt(r['req_per_s'], 2)} | {fmt(r['p50'], 2)} | "
                    f"{fmt(r['p99'], 2)} |"
                )
        if v.get("checks"):
            lines += ["", "Targets of issue 10:", ""]
            for c in v["checks"]:
                mark = "pass" if c["pass"] else "FAIL"
                lines.append(f"- {mark}: {c['check']} (measured {fmt(c['value'], 2)})")
        notes = [n for side in v.get("sides", {}).values() for n in side.get("notes", [])]
        notes += v.get("notes", [])
        if notes:
            lines += ["", *[f"Note: {n}" for n in notes]]
        lines.append("")
    return "\n".join(lines)


# --- running one side ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    levels: tuple[int, ...]
    duration_s: float
    max_requests: int
    warmup_s: float
    timeout_s: float = 5.0


def drive(server: Server, url: str, requests: Sequence[Request], plan: LoadPlan) -> list[Level]:
    """Warm-up (not recorded), then each level with the server's CPU time around it."""
    if plan.warmup_s > 0:
        run_wrk(
            url,
            requests,
            concurrency=min(8, max(plan.levels)),
            duration_s=plan.warmup_s,
            max_requests=10**9,
            timeout_s=plan.timeout_s,
        )
    out = []
    for c in plan.levels:
        before = sample_tree(server.pid)
        result = run_wrk(
            url,
            requests,
            concurrency=c,
            duration_s=plan.duration_s,
            max_requests=plan.max_requests,
            timeout_s=plan.timeout_s,
        )
        after = sample_tree(server.pid)
        out.append(Level(result, after.cpu_s - before.cpu_s, round(os.getloadavg()[0], 2)))
        print(
            f"  {server.name} c={c}: {result.req_per_s:.1f} req/s, "
            f"p50 {result.latency_ms['p50']:.2f} ms, p99 {result.latency_ms['p99']:.2f} ms, "
            f"errors {result.errors}, server CPU {after.cpu_s - before.cpu_s:.1f} s",
            flush=True,
        )
    return out


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float("nan")


def our_query_vector(model_dir: Path, variant: str, text: str) -> tuple[list[float], str]:
    """Our vector for a query, computed from the exported files alone (tokenizers + ORT), and
    the query prefix the manifest names (the peer must be sent the same prefixed text)."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    prefix = str(manifest.get("query_prefix") or "")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    encoding = tokenizer.encode(prefix + text)
    session = ort.InferenceSession(
        str(model_dir / manifest["variants"][variant]), providers=["CPUExecutionProvider"]
    )
    feeds = {}
    for inp in session.get_inputs():
        values = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        }[inp.name]
        dtype = np.int32 if inp.type == "tensor(int32)" else np.int64
        feeds[inp.name] = np.asarray([values], dtype=dtype)
    outputs = [o.name for o in session.get_outputs()]
    name = manifest.get("output") if manifest.get("output") in outputs else outputs[0]
    vector = session.run([name], feeds)[0][0]
    return [float(x) for x in vector], prefix


def model_batch_rate(
    model_dir: Path, variant: str, text: str, *, batch: int = 32, runs: int = 10
) -> dict[str, Any]:
    """The model's own ceiling: sentences/s of the model step alone on `batch` copies of the
    query (tokenised once), with the session the service opens (`load_onnx_encoder`: its
    spinning, thread and fusion options), what batching could reach at best."""
    from app.core.config import Settings
    from app.main import load_onnx_encoder
    from index_builder.model.encoder import TokenizingEncoder

    encoder = load_onnx_encoder(Settings(model_dir=model_dir, model_variant=variant, device="cpu"))
    if not isinstance(encoder, TokenizingEncoder):
        raise SystemExit(f"{model_dir}: the served encoder cannot run tokenised batches")
    tokens = encoder.tokenize([text] * batch, "query")
    encoder.encode_tokenized(tokens)  # first run allocates
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        encoder.encode_tokenized(tokens)
        times.append(time.perf_counter() - started)
    median = sorted(times)[len(times) // 2]
    return {
        "batch": batch,
        "runs": runs,
        "batch_ms_p50": round(median * 1000, 2),
        "sentences_per_s": round(batch / median, 1),
    }


def peer_version(venv: Path) -> str:
    found = sorted(venv.glob("lib/python*/site-packages/infinity_emb-*.dist-info"))
    if not found:
        return "infinity-emb ?"
    return "infinity-emb " + found[-1].name.removeprefix("infinity_emb-").removesuffix(".dist-info")


def peer_log_notes(log_text: str, optimized_files: Sequence[str] = ()) -> list[str]:
    """What the peer's log and cache say about its own set-up that changes its speed."""
    flat = " ".join(log_text.split())
    if "Optimization failed" in flat:
        return [
            "infinity's own ONNX graph optimisation failed at start ('Optimization failed ... "
            "Going to use the unoptimized model', as with optimum 2.x): the peer ran the export "
            "as is; tools/peer-constraints.txt pins the versions where it works"
        ]
    if optimized_files:
        return [
            "infinity optimised the graph at start, as it does by default (ONNX Runtime "
            f"transformer fusions, level 99): it served {', '.join(optimized_files)}"
        ]
    return []


def run_peer(
    variant: str,
    *,
    venv: Path,
    peer_dir: Path,
    port: int,
    query_text: str,
    our_vector: Sequence[float],
    plan: LoadPlan,
    logs: Path,
    ready_timeout_s: float,
) -> tuple[SideResult, dict[str, Any]]:
    folder = peer_dir / f"peer-{variant}"
    if not any(folder.glob("*.onnx")):
        raise SystemExit(
            f"{folder}: no ONNX file; run `make bench-peer` (it exports the peer model)"
        )
    env = dict(os.environ)
    env.update(
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        INFINITY_ANONYMOUS_USAGE_STATS="0",
        # A cache per variant: infinity keeps optimised graphs under HF_HOME keyed by the model
        # id, which is "." for both folders, so a shared cache could serve the other variant.
        HF_HOME=str((peer_dir / f"hf-{variant}").resolve()),
    )
    cmd = [
        str((venv / "bin" / "infinity_emb").resolve()),
        "v2",
        "--model-id",
        ".",
        "--served-model-name",
        PEER_NAME,
        "--engine",
        "optimum",
        "--device",
        "cpu",
        "--pooling-method",
        "mean",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",  # at info it logs every request, which costs it CPU under load
    ]
    version = peer_version(venv)
    side = SideResult(system=f"{version} ({variant})", route="/embeddings")
    base = f"http://127.0.0.1:{port}"
    server = Server(
        f"infinity-{variant}",
        cmd,
        health_url=f"{base}/health",
        log=logs / f"infinity-{variant}.log",
        env=env,
        cwd=folder,
    )
    with server.start(ready_timeout_s):
        side.ready_s = server.ready_s
        answer = post_json(f"{base}/embeddings", {"model": PEER_NAME, "input": [query_text]})
        peer_vec = answer["data"][0]["embedding"]
        cos = cosine(peer_vec, our_vector)
        parity = {"cosine": round(cos, 6), "ok": cos > COSINE_MIN, "text": query_text}
        print(f"  infinity-{variant}: cosine with ours {cos:.5f}", flush=True)
        if not parity["ok"]:
            side.notes.append(f"peer vector differs from ours (cosine {cos:.4f}): not loaded")
            return side, parity
        body = {"model": PEER_NAME, "input": [query_text]}
        side.levels = drive(server, f"{base}/embeddings", [json_post("/embeddings", body)], plan)
        side.rss_mb = round(sample_tree(server.pid).rss_mb, 1)
    optimized = sorted(p.name for p in Path(env["HF_HOME"]).glob("**/*_optimized.onnx"))
    side.notes += peer_log_notes(server.log.read_text("utf-8", errors="replace"), optimized)
    return side, parity


@dataclass(frozen=True)
class OursConfig:
    model_dir: Path
    variant: str
    faq: Path
    qdrant_path: Path
    port: int
    top_k: int = 5
    raw_runs: int = 300


def our_env(cfg: OursConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FAQ_MODEL_DIR=str(cfg.model_dir),
        FAQ_MODEL_VARIANT=cfg.variant,
        FAQ_INDEX_PATH=str(cfg.qdrant_path),
        FAQ_HOST="127.0.0.1",
        FAQ_PORT=str(cfg.port),
        FAQ_LOG_LEVEL="warning",
    )
    env.pop("FAQ_QDRANT_URL", None)
    env.pop("QDRANT_URL", None)
    env.pop("FAQ_QDRANT_PATH", None)  # the old name, read after FAQ_INDEX_PATH
    return env


def build_index(cfg: OursConfig) -> float:
    """`faq-index build` for this variant into its own directory (skipped when unchanged)."""
    started = time.monotonic()
    subprocess.run(
        [str(VENV_BIN / "faq-index"), "build", "--faq", str(cfg.faq)],
        env=our_env(cfg),
        check=True,
    )
    return round(time.monotonic() - started, 1)


def measure_raw(cfg: OursConfig, query: str, logs: Path) -> dict[str, Any]:
    """The service's own raw measure (faq-bench: same loader, same index), service not running,
    on the one query the load uses. Its HTTP part meets no server and is ignored."""
    with tempfile.TemporaryDirectory() as tmp:
        examples = Path(tmp) / "query.json"
        examples.write_text(json.dumps([query]), encoding="utf-8")
        out = Path(tmp) / "raw.json"
        cmd = [
            str(VENV_BIN / "python"),
            "-m",
            "tools.bench",
            "--url",
            f"http://127.0.0.1:{cfg.port}",
            "--levels",
            "1",
            "--requests",
            "1",
            "--duration",
            "0.1",
            "--raw-runs",
            str(cfg.raw_runs),
            "--top-k",
            str(cfg.top_k),
            "--examples",
            str(examples),
            "--faq",
            str(cfg.faq),
            "--json",
            str(out),
        ]
        with (logs / f"raw-{cfg.variant}.log").open("wb") as log:
            subprocess.run(cmd, env=our_env(cfg), stdout=log, stderr=subprocess.STDOUT, check=True)
        report = json.loads(out.read_text(encoding="utf-8"))
    raw = report.get("raw") or {}
    latency = raw.get("latency") or {}
    vector = raw.get("vector_latency") or {}
    return {
        "runs": raw.get("runs"),
        "p50_ms": latency.get("p50_ms"),
        "p99_ms": latency.get("p99_ms"),
        "vector_p50_ms": vector.get("p50_ms"),
        "source": raw.get("source"),
        "model": report.get("model"),
    }


def faq_serve(cfg: OursConfig, log: Path, settings: Mapping[str, str] | None = None) -> Server:
    """faq-serve on `cfg`'s index and port (not started), with `settings` over the inherited."""
    return Server(
        f"faq-serve-{cfg.variant}",
        [str(VENV_BIN / "faq-serve")],
        health_url=f"http://127.0.0.1:{cfg.port}/health/ready",
        log=log,
        env={**our_env(cfg), **(settings or {})},
    )


def add_serve_options(
    parser: argparse.ArgumentParser, *, port: int, out: str, pairs: int, burst_s: float
) -> None:
    """The options of a tool that loads faq-serve on bench-peer's index of one variant, in
    pairs of short bursts after a warm-up."""
    parser.add_argument("--pairs", type=int, default=pairs)
    parser.add_argument("--burst", type=float, default=burst_s, help="seconds per burst")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load first")
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--query", default=default_query(), help="the query of every request")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--faq", type=Path, default=Path("data/faq.jsonl"))
    parser.add_argument("--qdrant-root", type=Path, default=Path("var/bench-peer"))
    parser.add_argument("--port", type=int, default=port, help="faq-serve's (first) port")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=Path(out))


def parse_serve_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse `add_serve_options`' options; refuse a model folder with no exported model."""
    args = parser.parse_args(argv)
    if not (args.model_dir / "manifest.json").is_file():
        parser.error(f"{args.model_dir}: no exported model (make model)")
    if args.pairs < 1 or args.burst < 1:
        parser.error("--pairs must be >= 1 and --burst >= 1 s")
    return args


def run_ours(
    cfg: OursConfig, *, query: str, plan: LoadPlan, logs: Path, ready_timeout_s: float
) -> SideResult:
    headers = {}
    key = os.environ.get("FAQ_SEARCH_API_KEY")
    if key:
        headers["X-API-Key"] = key
    side = SideResult(system=f"faq-serve ({cfg.variant})", route="/search")
    settings = inherited_settings(os.environ)
    if settings:
        side.notes.append(
            "faq-serve settings: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
        )
    base = f"http://127.0.0.1:{cfg.port}"
    server = faq_serve(cfg, logs / f"faq-serve-{cfg.variant}-{cfg.qdrant_path.name}.log")
    request = json_post("/search", {"query": query, "top_k": cfg.top_k}, headers)
    with server.start(ready_timeout_s):
        side.ready_s = server.ready_s
        side.levels = drive(server, f"{base}/search", [request], plan)
        side.rss_mb = round(sample_tree(server.pid).rss_mb, 1)
    return side


def host_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(results: Mapping[str, Any], out: Path, render: Any = render_markdown) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(render(results), encoding="utf-8")
    print(f"results written to {out}/results.json and {out}/results.md")


def csv_ints(value: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {value!r}") from None
    if not items or min(items) < 1:
        raise argparse.ArgumentTypeError("levels must be integers >= 1")
    return items


def csv_names(allowed: Sequence[str]) -> Any:
    def parse(value: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}: {value!r}")
        return items

    return parse


def default_query() -> str:
    examples = REPO / "data" / "examples.json"
    try:
        first = json.loads(examples.read_text(encoding="utf-8"))[0]
        return str(first["query"] if isinstance(first, dict) else first)
    except (OSError, ValueError, IndexError, KeyError):
        return "can I cancel mi pedido"


def add_load_options(parser: argparse.ArgumentParser, levels: str) -> None:
    parser.add_argument("--levels", type=csv_ints, default=csv_ints(levels))
    parser.add_argument("--duration", type=float, default=15.0, help="most seconds per level")
    parser.add_argument("--max-requests", type=int, default=20000, help="most responses per level")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of unrecorded load first"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="wrk's per-request timeout")
    parser.add_argument(
        "--query", default=default_query(), help="the one query every request sends"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--raw-runs", type=int, default=300, help="in-process searches")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("FAQ_MODEL_DIR", DEFAULT_MODEL_DIR))
    )
    parser.add_argument("--port", type=int, default=8766, help="faq-serve's port")


def plan_of(args: argparse.Namespace) -> LoadPlan:
    return LoadPlan(
        levels=tuple(args.levels),
        duration_s=float(args.duration),
        max_requests=int(args.max_requests),
        warmup_s=float(args.warmup),
        timeout_s=float(args.timeout),
    )


def sitting(prog: str, argv: Sequence[str] | None, query: str) -> dict[str, Any]:
    """A report's header: the command as typed, when, the host, the query."""
    given = argv if argv is not None else sys.argv[1:]
    return {
        "command": " ".join([prog, *map(shlex.quote, given)]),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        "query": query,
    }


def report_head(title: str, results: Mapping[str, Any], detail: str) -> list[str]:
    """A markdown report's first lines: title, the command, the host and when, then `detail`."""
    return [
        f"# {title}",
        "",
        f"Command: `{results['command']}`  ",
        f"Host: {results['host']['cpus']} CPUs; {results['started_at']}; {detail}",
    ]


def common_results(
    args: argparse.Namespace, argv: Sequence[str] | None, prog: str
) -> dict[str, Any]:
    return {
        **sitting(prog, argv, args.query),
        "levels": list(args.levels),
        "duration_s": args.duration,
        "max_requests": args.max_requests,
        "warmup_s": args.warmup,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_peer",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_options(parser, "1,8,32,64")
    parser.add_argument("--variants", type=csv_names(("int8", "fp32")), default=("int8", "fp32"))
    parser.add_argument("--sides", type=csv_names(("peer", "ours")), default=("peer", "ours"))
    parser.add_argument("--faq", type=Path, default=Path("data/faq.jsonl"))
    parser.add_argument("--qdrant-root", type=Path, default=Path("var/bench-peer"))
    parser.add_argument("--peer-venv", type=Path, default=Path(".cache/infinity-venv"))
    parser.add_argument("--peer-dir", type=Path, default=Path(".cache/bench-peer"))
    parser.add_argument("--peer-port", type=int, default=7997)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench-peer"))
    args = parser.parse_args(argv)
    plan = plan_of(args)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = common_results(args, argv, parser.prog)
    results["variants"] = {}
    failed = False
    for variant in args.variants:
        print(f"== {variant}", flush=True)
        v: dict[str, Any] = {"sides": {}, "notes": []}
        results["variants"][variant] = v
        vector, prefix = our_query_vector(args.model_dir, variant, args.query)
        v["model_batch"] = model_batch_rate(args.model_dir, variant, args.query)
        if "peer" in args.sides:
            try:
                side, parity = run_peer(
                    variant,
                    venv=args.peer_venv,
                    peer_dir=args.peer_dir,
                    port=args.peer_port,
                    query_text=prefix + args.query,
                    our_vector=vector,
                    plan=plan,
                    logs=logs,
                    ready_timeout_s=args.ready_timeout,
                )
            except ServerError as exc:
                print(f"  peer failed: {exc}", flush=True)
                v["notes"].append(f"the peer did not run: {exc}")
                failed = True
            else:
                v["parity"] = parity
                v["sides"]["peer"] = side.to_json()
                failed |= not parity["ok"]
        if "ours" in args.sides:
            cfg = OursConfig(
                model_dir=args.model_dir,
                variant=variant,
                faq=args.faq,
                qdrant_path=args.qdrant_root / f"qdrant-{variant}",
                port=args.port,
                top_k=args.top_k,
                raw_runs=args.raw_runs,
            )
            v["index_build_s"] = build_index(cfg)
            if args.raw_runs > 0:
                try:
                    v["raw"] = measure_raw(cfg, args.query, logs)
                    print(f"  raw in-process p50 {v['raw']['p50_ms']:.2f} ms", flush=True)
                except subprocess.CalledProcessError:
                    v["notes"].append(f"the raw measure failed: see {logs}/raw-{variant}.log")
                    failed = True
            try:
                side = run_ours(
                    cfg, query=args.query, plan=plan, logs=logs, ready_timeout_s=args.ready_timeout
                )
            except ServerError as exc:
                print(f"  faq-serve failed: {exc}", flush=True)
                v["notes"].append(f"faq-serve did not run: {exc}")
                failed = True
            else:
                v["sides"]["ours"] = side.to_json()
        if "ours" in v["sides"] and "peer" in v["sides"]:
            v["ratios"] = ratios(v["sides"]["ours"]["levels"], v["sides"]["peer"]["levels"])
        v["checks"] = checks(v)
        write_results(results, args.out)  # after each variant: a later failure keeps these
    print(render_markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
