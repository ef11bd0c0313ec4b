"""The model alone: ONNX Runtime time per batch of our exported variants and of the peer's model.

Throughput under load is bounded by the model's cost per sentence at the batch sizes load forms,
so this times `session.run` on one mixed-language query repeated to batch 1 and 32 (inputs
from our tokenizer, the same for every model), 2 intra-op threads, for:

* our variants as the service opens them (`OnnxEncoder`'s session options: all graph
  optimisations except `cpu_disabled_optimizers()`),
* the same files with ONNX Runtime's defaults (every fusion on), to show what each left-out
  fusion costs,
* the peer's model folders from `make bench-peer` (`.cache/bench-peer/peer-*`), with ONNX
  Runtime's defaults, as infinity-emb's optimum engine opens them.

Rounds alternate between the sessions, so drift on a shared machine hits all of them alike;
the table gives the median per batch and sentences/s, and each row's ratio to the peer's model
of the same precision.

    .venv/bin/python -m tools.model_speed
    .venv/bin/python -m tools.model_speed --model-dir artifacts/onnx/shop --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from index_builder.model.encoder import cpu_disabled_optimizers
from index_builder.model.manifest import ModelManifest

QUERY = "query: barang saya belum sampai, where is my order"
PEER = {
    "fp32": ".cache/bench-peer/peer-fp32/model.onnx",
    "int8": ".cache/bench-peer/peer-int8/model_quantized.onnx",
}


@dataclass
class Timed:
    label: str
    precision: str
    session: Any
    feeds: dict[int, dict[str, np.ndarray]]
    ms: dict[int, list[float]] = field(default_factory=dict)


def _session(path: Path, disabled: list[str], threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(
        str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )


def _feeds(session: Any, tokenizer: Tokenizer, batches: list[int]) -> dict[int, dict[str, Any]]:
    names = {i.name for i in session.get_inputs()}
    out: dict[int, dict[str, Any]] = {}
    for size in batches:
        ids = np.array([e.ids for e in tokenizer.encode_batch([QUERY] * size)], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        out[size] = feed
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, default=Path("artifacts/onnx/multilingual-e5-small")
    )
    parser.add_argument("--variants", default="int8,fp32")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=12, help="alternating rounds")
    parser.add_argument("--runs", type=int, default=5, help="runs per session and round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    manifest = ModelManifest.read(args.model_dir)
    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    batches = [int(b) for b in args.batches.split(",")]
    timed: list[Timed] = []
    for precision in args.variants.split(","):
        ours = args.model_dir / manifest.variant_file(precision)
        served = ", ".join(cpu_disabled_optimizers()) or "nothing"
        for label, disabled in (
            (f"ours {precision}, as served (fusions off: {served})", cpu_disabled_optimizers()),
            (f"ours {precision}, ONNX Runtime defaults", []),
        ):
            session = _session(ours, disabled, args.threads)
            timed.append(Timed(label, precision, session, _feeds(session, tokenizer, batches)))
        peer = Path(PEER[precision])
        if peer.exists():
            session = _session(peer, [], args.threads)
            label = f"peer {precision} ({peer.parent.name}), ONNX Runtime defaults"
            timed.append(Timed(label, precision, session, _feeds(session, tokenizer, batches)))
        else:
            print(f"(no {peer}: `make bench-peer` exports the peer's model)")
    for t in timed:  # warm-up: first runs allocate
        for feed in t.feeds.values():
            for _ in range(3):
                t.session.run(None, feed)
    for _ in range(args.rounds):
        for t in timed:
            for size, feed in t.feeds.items():
                start = time.perf_counter()
                for _ in range(args.runs):
                    t.session.run(None, feed)
                t.ms.setdefault(size, []).append((time.perf_counter() - start) * 1000 / args.runs)
    print(
        f"\n`{QUERY}`, {args.threads} threads, median of {args.rounds} rounds x {args.runs} runs\n"
    )
    head = " | ".join(f"batch {b}: ms | sentences/s | vs peer" for b in batches)
    print(f"| model | {head} |")
    print("|---|" + "---|---|---|" * len(batches))
    peers = {t.precision: t for t in timed if t.label.startswith("peer")}
    for t in timed:
        cells = []
        for size in batches:
            ms = statistics.median(t.ms[size])
            peer_t = peers.get(t.precision)
            ratio = statistics.median(peer_t.ms[size]) / ms if peer_t else float("nan")
            cells.append(f"{ms:.2f} | {size * 1000 / ms:.0f} | {ratio:.2f}x")
        print(f"| {t.label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
