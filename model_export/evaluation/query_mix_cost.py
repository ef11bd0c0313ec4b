"""What query-side mixing costs at serving time: one query encoded alone vs with its rewrite.

The service would encode a rewritten query's two rows in one model batch, so the cost is the
difference between a batch of one and a batch of two, in-process ONNX Runtime, as served:

    python -m model_export.evaluation.query_mix_cost   # the base model, fp32
    python -m model_export.evaluation.query_mix_cost --variant int8 --repeats 200

It prints each sample query's rewrite (the training lexicons of `--lexicons`, as
`faq-model eval --query-mix` uses them) and the p50/p90 of both batch sizes, alternated so that
drift on a shared machine reaches both. Time the rewrite itself too with `--rewrite`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from model_export.evaluation.query_mixing import DEFAULT_LEXICONS, DIRECTIONS, QueryNormaliser

# Target-language sentences with English words, as shoppers write them.
SAMPLES = [
    ("wo ist meine order, sie ist late", "de"),
    ("quiero cambiar mi default address", "es"),
    ("je veux un refund pour ma commande", "fr"),
    ("posso pagar com credit card", "pt"),
]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def time_batches(
    encode: Callable[[list[str]], object],
    pairs: Sequence[tuple[str, str]],
    *,
    repeats: int = 200,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, dict[str, float]]:
    """Batch size (1: the query, 2: the query and its rewrite) -> p50/p90 in ms and n."""
    for query, rewrite in pairs:  # warm-up: the first runs allocate
        encode([query])
        encode([query, rewrite])
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for query, rewrite in pairs:
            for rows, batch in ((1, [query]), (2, [query, rewrite])):
                t0 = clock()
                encode(batch)
                times[rows].append(1000.0 * (clock() - t0))
    out: dict[int, dict[str, float]] = {}
    for rows, values in times.items():
        values.sort()
        out[rows] = {
            "p50_ms": statistics.median(values),
            "p90_ms": _quantile(values, 0.9),
            "n": float(len(values)),
        }
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=Path("artifacts/onnx/multilingual-e5-small"))
    ap.add_argument("--variant", default="fp32")
    ap.add_argument("--lexicons", type=Path, default=DEFAULT_LEXICONS)
    ap.add_argument("--direction", choices=DIRECTIONS, default="target")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rewrite", action="store_true", help="also time the rewrite itself")
    args = ap.parse_args(argv)

    from index_builder.model.encoder import OnnxEncoder

    normaliser = QueryNormaliser.from_config(args.direction, args.lexicons)
    pairs = [(q, normaliser.normalise(q, lang)) for q, lang in SAMPLES]
    for query, rewrite in pairs:
        print(f"{query!r} -> {rewrite!r}")
    encoder = OnnxEncoder.load(args.model_dir, variant=args.variant)
    result = time_batches(encoder.encode_queries, pairs, repeats=args.repeats)
    for rows, r in result.items():
        print(
            f"{args.variant} batch of {rows}: p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms "
            f"({int(r['n'])} encodes)"
        )
    print(f"ratio of the p50s: {result[2]['p50_ms'] / result[1]['p50_ms']:.2f}")
    if args.rewrite:
        n = args.repeats * len(SAMPLES)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            for query, lang in SAMPLES:
                normaliser.normalise(query, lang)
        print(f"rewrite: {1000.0 * (time.perf_counter() - t0) / n:.3f} ms per query")


if __name__ == "__main__":
    main()
