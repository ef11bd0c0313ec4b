"""`make gpu-check`: the GPU path in one command, one report (artifacts/gpu-check/report.{json,md}).

    python scripts/gpu_check.py --model-dir artifacts/onnx/multilingual-e5-small \
        [--levels 1,8,32,64,128,256] [--duration 8] [--skip-train] [--out artifacts/gpu-check]

Steps, each timed and recorded even when it fails (the report says what broke and goes on):
1. environment: GPU (nvidia-smi), onnxruntime version and providers;
2. variants: a model directory that travelled without its int8/fp16 files gets them rebuilt
   from its fp32 graph (model_export.onnx_export.rebuild_variants);
3. the gpu-marked tests (pytest -m gpu, against this model directory);
4. parity: fp16 on CUDA against fp32 on CUDA and against fp32 on the CPU, on the shopper test
   queries and the sample FAQ: cosine per query and the overlap of the top 5 FAQ entries;
5. serving: `faq-serve` on CUDA (fp16, batching on) over the sample FAQ, loaded with wrk at each
   concurrency level for `--duration` seconds (one mixed-language query per request, cycling
   through the README's examples), with GPU utilisation sampled by nvidia-smi; then the same
   load against the service on this machine's CPU cores (int8) for comparison. `--mps` runs
   the CUDA service under NVIDIA's Multi-Process Service (its control daemon started for the
   step and stopped after it), so that the workers' kernels share the GPU at once;
6. training: `faq-model train --config configs/train/gpu-probe.toml` (100 + 200 steps of the
   GPU recipe in bf16): samples/s per stage and peak GPU memory.
The whole run is sized for at most 10 minutes on one H100/H200.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a file (`python scripts/gpu_check.py`): the repository's `tools` package (the load
# generator it shares with make bench-peer) is importable from the root only.
sys.path.insert(0, str(REPO))
SAMPLE_FAQ = REPO / "data" / "faq.jsonl"
SHOPPER_TEST = REPO / "data" / "shopper" / "test.jsonl"
EXAMPLES = REPO / "data" / "examples.json"
PROBE_CONFIG = REPO / "configs" / "train" / "gpu-probe.toml"
# The README's mixed-language examples (data/examples.json, `readme`): what a shopper types.
QUERIES = [e["query"] for e in json.loads(EXAMPLES.read_text(encoding="utf-8")) if e.get("readme")]


def _step(report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    try:
        result = {"status": "ok", **fn()}
    except Exception as exc:  # the report records what broke; the next step still runs
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    result["time_s"] = round(time.perf_counter() - t0, 1)
    report["steps"][name] = result
    print(json.dumps(result, indent=1, default=str)[:3000], flush=True)
    _write(report)


def _write(report: dict[str, Any]) -> None:
    """The report so far: a run cut short by a time limit keeps the steps it finished."""
    out = Path(report["out"])
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(_markdown(report))


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False
    )
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exit {done.returncode}: {out[-1500:]}")
    return out


# --- 1. environment -------------------------------------------------------------------------


def step_env() -> dict[str, Any]:
    import onnxruntime as ort

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
    }
    if shutil.which("nvidia-smi"):
        info["gpu"] = _run(["nvidia-smi", "-L"], 30).strip()
        info["driver"] = _run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], 30
        ).strip()
    return info


# --- 2. variants ----------------------------------------------------------------------------


def step_variants(model_dir: Path) -> dict[str, Any]:
    from model_export.onnx_export import rebuild_variants

    rebuilt = rebuild_variants(model_dir)
    from index_builder.model.manifest import ModelManifest

    manifest = ModelManifest.read(model_dir)
    return {
        "rebuilt": rebuilt,
        "fingerprints": {v: manifest.fingerprint(v) for v in manifest.variants},
    }


# --- 3. gpu tests ---------------------------------------------------------------------------


def step_tests(model_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "FAQ_TEST_ONNX_DIR": str(model_dir)}
    # Only the files that hold gpu tests: collecting the rest would import what a bare CUDA
    # host need not have (training and evaluation dependencies).
    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if "mark.gpu" in p.read_text(encoding="utf-8")
    )
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO, check=False
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    summary = lines[-1] if lines else ""
    if done.returncode != 0 or " passed" not in summary:
        raise RuntimeError(f"pytest -m gpu exit {done.returncode}: {' | '.join(lines[-25:])}")
    return {"summary": summary}


# --- 4. parity ------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def step_parity(model_dir: Path) -> dict[str, Any]:
    import numpy as np

    from index_builder.model.encoder import CPU, CUDA, OnnxEncoder

    queries = [row["query"] for row in _read_jsonl(SHOPPER_TEST)]
    faq = _read_jsonl(SAMPLE_FAQ)
    passages = [row["question"] for row in faq]
    runs = {
        "fp16_cuda": ("fp16", [CUDA]),
        "fp32_cuda": ("fp32", [CUDA]),
        "fp32_cpu": ("fp32", [CPU]),
    }
    vectors: dict[str, tuple[Any, Any]] = {}
    timings: dict[str, float] = {}
    for name, (variant, providers) in runs.items():
        enc = OnnxEncoder.load(model_dir, variant=variant, providers=providers, batch_size=64)
        if providers == [CUDA] and CUDA not in enc.providers:
            raise RuntimeError(f"{name}: session runs on {enc.providers}, not CUDA")
        enc.encode_queries(queries[:8])  # warm-up (CUDA kernels, arena)
        t0 = time.perf_counter()
        q = enc.encode_queries(queries)
        timings[name] = round(time.perf_counter() - t0, 3)
        vectors[name] = (q, enc.encode_passages(passages))

    def compare(a: str, b: str) -> dict[str, float]:
        qa, pa = vectors[a]
        qb, pb = vectors[b]
        cos = np.sum(qa * qb, axis=1)
        top_a = np.argsort(-(qa @ pa.T), axis=1)[:, :5]
        top_b = np.argsort(-(qb @ pb.T), axis=1)[:, :5]
        overlap = [len(set(x) & set(y)) / 5 for x, y in zip(top_a, top_b, strict=True)]
        top1 = float(np.mean(top_a[:, 0] == top_b[:, 0]))
        return {
            "cosine_mean": round(float(cos.mean()), 6),
            "cosine_min": round(float(cos.min()), 6),
            "top5_overlap_mean": round(float(np.mean(overlap)), 4),
            "top1_agreement": round(top1, 4),
        }

    return {
        "queries": len(queries),
        "faq_entries": len(passages),
        "fp16_cuda_vs_fp32_cuda": compare("fp16_cuda", "fp32_cuda"),
        "fp16_cuda_vs_fp32_cpu": compare("fp16_cuda", "fp32_cpu"),
        "fp32_cuda_vs_fp32_cpu": compare("fp32_cuda", "fp32_cpu"),
        "encode_all_queries_s": timings,
    }


# --- 5. serving -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _GpuSampler:
    """nvidia-smi utilisation and memory every 200 ms while a load level runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _GpuSampler:
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "200",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                util, mem = (float(x) for x in line.strip().split(","))
                self.samples.append((util, mem))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        utils = [u for u, _ in self.samples]
        return {
            "gpu_util_mean": round(sum(utils) / len(utils), 1),
            "gpu_util_max": max(utils),
            "gpu_mem_mb_max": max(m for _, m in self.samples),
        }


def _load(port: int, levels: list[int], duration: float, pid: int) -> list[dict[str, Any]]:
    from tools.loadgen import json_post, run_wrk, sample_tree

    url = f"http://127.0.0.1:{port}"
    rotation = [json_post("/search", {"query": q, "top_k": 3}) for q in QUERIES]

    def wrk(c: int, seconds: float) -> Any:
        # wrk's request bound set out of reach: the levels are bounded by time here.
        return run_wrk(url, rotation, concurrency=c, duration_s=seconds, max_requests=10**7)

    # Unrecorded warm-up at the highest level: every worker's session (CUDA context, kernels,
    # arena) is made on its first requests, which would otherwise land in the first level.
    wrk(max(levels), 3)
    rows = []
    for c in levels:
        cpu0 = sample_tree(pid).cpu_s
        with _GpuSampler() as gpu:
            res = wrk(c, duration)
        row = {
            "concurrency": c,
            "req_s": round(res.req_per_s, 2),
            "requests": res.requests,
            **{f"{k}_ms": round(v, 2) for k, v in res.latency_ms.items() if k.startswith("p")},
            "non_2xx": res.requests - res.ok,
            "socket_errors": res.socket_error_count,
            **gpu.summary(),
            "server_cpu_s": round(sample_tree(pid).cpu_s - cpu0, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


@contextlib.contextmanager
def _mps(work: Path) -> Iterator[dict[str, str]]:
    """NVIDIA's Multi-Process Service for the CUDA service's workers; yields their environment.

    Without it each worker process has its own CUDA context and the GPU runs one context's
    kernels at a time: the workers' small batches take turns. Under MPS they run side by side
    (README, GPU: 8 workers served 3,017-3,594 req/s at c=32 with it, 1,831 without).
    """
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        raise RuntimeError("--mps: nvidia-cuda-mps-control is not on PATH (NVIDIA driver tools)")
    env = {
        "CUDA_MPS_PIPE_DIRECTORY": str(work / "mps-pipe"),
        "CUDA_MPS_LOG_DIRECTORY": str(work / "mps-log"),
    }
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    daemon_env = {**os.environ, **env}
    subprocess.run([control, "-d"], env=daemon_env, check=True, timeout=30)
    try:
        yield env
    finally:
        # `quit` waits for the MPS server to exit (the workers are stopped by then).
        subprocess.run(
            [control], input="quit\n", text=True, env=daemon_env, timeout=60, check=False
        )


def step_serving(
    model_dir: Path,
    levels: list[int],
    duration: float,
    cpu_levels: list[int],
    work: Path,
    workers: int = 1,
    mps: bool = False,
) -> dict[str, Any]:
    from index_builder.faq import read_faq
    from index_builder.model.encoder import CPU, CUDA, OnnxEncoder
    from index_builder.store import EmbeddedStore
    from tools.loadgen import Server

    result: dict[str, Any] = {"queries": QUERIES, "duration_s": duration, "mps": mps}
    setups = [
        ("cuda_fp16", "cuda", "fp16", [CUDA], levels, mps),
        ("cpu_int8", "cpu", "int8", [CPU], cpu_levels, False),
    ]
    for name, device, variant, providers, lv, under_mps in setups:
        if not lv:
            continue
        qdrant = work / f"qdrant-{name}"
        encoder = OnnxEncoder.load(model_dir, variant=variant, providers=providers)
        EmbeddedStore(qdrant).build(read_faq(SAMPLE_FAQ), encoder, progress=False)
        port = _free_port()
        env = {
            **os.environ,
            "FAQ_MODEL_DIR": str(model_dir),
            "FAQ_MODEL_VARIANT": variant,
            "FAQ_DEVICE": device,
            "FAQ_INDEX_PATH": str(qdrant),
            "FAQ_LOG_LEVEL": "warning",
            "FAQ_JOBS_DIR": str(work / f"jobs-{name}"),
            "FAQ_WORKERS": str(workers),
        }
        with contextlib.ExitStack() as stack:
            if under_mps:
                # Started after the index build, for the server alone: this process keeps no
                # MPS client context that would hold up the daemon's shutdown.
                env.update(stack.enter_context(_mps(work)))
            server = Server(
                f"faq-serve ({name})",
                [sys.executable, "-c", "from app.cli import main; main()", "--port", str(port)],
                health_url=f"http://127.0.0.1:{port}/health/ready",
                log=work / f"serve-{name}.log",
                env=env,
                cwd=REPO,
            ).start(ready_timeout_s=180)
            stack.callback(server.stop)  # before the MPS daemon's quit (last in, first out)
            import httpx

            ready = httpx.get(server.health_url, timeout=10).json()
            result[name] = {
                "settings": {k: v for k, v in env.items() if k.startswith(("FAQ_", "CUDA_MPS_"))},
                "providers": ready.get("providers"),
                "model": ready.get("model"),
                "levels": _load(port, lv, duration, server.pid),
            }
    return result


# --- 6. training ----------------------------------------------------------------------------


def step_train(config: Path) -> dict[str, Any]:
    out = _run(
        [
            sys.executable,
            "-c",
            "from model_export.cli import main; main()",
            "train",
            "--config",
            str(config),
        ],
        300,
    )
    from model_export.training.config import load_config

    run_dir = REPO / load_config(config).output_dir
    report = json.loads((run_dir / "run_report.json").read_text())
    base = Path(load_config(config).model.base_dir)
    return {
        "config": str(config.relative_to(REPO)),
        "device": report["device"],
        "autocast": report["autocast"],
        "time_s": report["time_s"],
        "peak_gpu_memory_mb": report.get("peak_gpu_memory_mb"),
        "stages": report["stages"],
        "base_weights": "random init (RANDOM_INIT marker)"
        if (base / "RANDOM_INIT").exists()
        else str(base),
        "log_tail": out[-600:],
    }


# --- report ---------------------------------------------------------------------------------


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# gpu-check {report['started']}", "", f"`{report['command']}`", ""]
    env = report["steps"].get("environment", {})
    lines += [f"- GPU: {env.get('gpu', '?')}, driver {env.get('driver', '?')}, "
              f"onnxruntime {env.get('onnxruntime', '?')}, {env.get('cpus', '?')} CPUs", ""]  # fmt: skip
    lines += ["| step | status | time (s) |", "|---|---|---|"]
    for name, step in report["steps"].items():
        lines.append(f"| {name} | {step['status']} | {step['time_s']} |")
    serving = report["steps"].get("serving", {})
    for name in ("cuda_fp16", "cpu_int8"):
        if name not in serving:
            continue
        settings = serving[name].get("settings", {})
        mps = " under MPS" if "CUDA_MPS_PIPE_DIRECTORY" in settings else ""
        workers = settings.get("FAQ_WORKERS", "?")
        lines += ["", f"## /search, {name} ({serving[name].get('providers')}), "
                  f"{workers} workers{mps}", "",
                  "| c | req/s | p50 ms | p90 ms | p99 ms | non-2xx | socket errors | GPU util mean/max % | server CPU s |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in serving[name]["levels"]:
            util = f"{r.get('gpu_util_mean', '-')}/{r.get('gpu_util_max', '-')}"
            lines.append(
                f"| {r['concurrency']} | {r.get('req_s')} | {r.get('p50_ms')} | {r.get('p90_ms')} | "
                f"{r.get('p99_ms')} | {r.get('non_2xx')} | {r.get('socket_errors')} | {util} | "
                f"{r.get('server_cpu_s')} |"
            )
    parity = report["steps"].get("parity", {})
    if parity.get("status") == "ok":
        lines += [
            "",
            "## Parity",
            "",
            "| pair | cosine mean | cosine min | top-5 overlap | top-1 agreement |",
            "|---|---|---|---|---|",
        ]
        for key in ("fp16_cuda_vs_fp32_cuda", "fp16_cuda_vs_fp32_cpu", "fp32_cuda_vs_fp32_cpu"):
            p = parity[key]
            lines.append(
                f"| {key} | {p['cosine_mean']} | {p['cosine_min']} | {p['top5_overlap_mean']} | {p['top1_agreement']} |"
            )
    train = report["steps"].get("training", {})
    if train.get("status") == "ok":
        lines += ["", "## Training probe", ""]
        for s in train["stages"]:
            lines.append(f"- {s['stage']}: {s['steps']} steps, batch {s['batch_size']}, "
                         f"{s['samples_per_s']} samples/s ({s['time_s_last_session']} s)")  # fmt: skip
        lines.append(f"- peak GPU memory {train['peak_gpu_memory_mb']} MB, {train['autocast']}, "
                     f"weights: {train['base_weights']}")  # fmt: skip
    failed = {k: v["error"] for k, v in report["steps"].items() if v["status"] != "ok"}
    if failed:
        lines += ["", "## Failed steps", ""] + [f"- {k}: {v[:800]}" for k, v in failed.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model-dir", type=Path, default=REPO / "artifacts/onnx/multilingual-e5-small"
    )
    parser.add_argument("--out", type=Path, default=REPO / "artifacts/gpu-check")
    parser.add_argument("--levels", default="1,8,32,64,128,256")
    parser.add_argument("--cpu-levels", default="1,32,128", help="empty: no CPU comparison")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("FAQ_WORKERS", "4")),
        help="faq-serve worker processes, each with its own session (H200: without --mps 4 "
        "served the most at p99 <= 30 ms, with it 6-8; see the README's GPU section)",
    )
    parser.add_argument(
        "--mps",
        action="store_true",
        help="serve on CUDA under NVIDIA MPS (nvidia-cuda-mps-control), so that the workers' "
        "batches share the GPU at once (README, GPU: with 6-8 workers it served the most)",
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per load level")
    parser.add_argument(
        "--skip", default="", help="comma-separated steps to skip: tests,parity,serving,training"
    )
    parser.add_argument("--train-config", type=Path, default=PROBE_CONFIG)
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    levels = [int(x) for x in args.levels.split(",") if x]
    cpu_levels = [int(x) for x in args.cpu_levels.split(",") if x]
    model_dir = args.model_dir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "out": str(args.out),
        "steps": {},
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        _step(report, "environment", step_env)
        _step(report, "variants", lambda: step_variants(model_dir))
        # The serving figures first: they are what a short lease must not lose.
        if "serving" not in skip:
            _step(
                report,
                "serving",
                lambda: step_serving(
                    model_dir,
                    levels,
                    args.duration,
                    cpu_levels,
                    Path(tmp),
                    args.workers,
                    args.mps,
                ),
            )
        if "parity" not in skip:
            _step(report, "parity", lambda: step_parity(model_dir))
        if "tests" not in skip:
            _step(report, "gpu_tests", lambda: step_tests(model_dir))
        if "training" not in skip:
            _step(report, "training", lambda: step_train(args.train_config.resolve()))
    report["total_s"] = round(time.perf_counter() - t0, 1)
    _write(report)
    print((args.out / "report.md").read_text(), flush=True)
    return 0 if all(s["status"] == "ok" for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
