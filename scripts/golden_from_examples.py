"""Write the quality gate's golden queries (data/golden.json) from data/examples.json.

A query is kept when the served model finds its topic's own FAQ id (the English entry, e.g.
`order-cancel`) within the first `--within` hits for every variant given; the gate then asks
for it within `FAQ_GOLDEN_TOP_K` (default 5), which leaves room for small drifts.

    .venv/bin/python scripts/golden_from_examples.py \
        --model artifacts/onnx/multilingual-e5-small --variant fp32 --variant int8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from index_builder.faq import read_faq
from index_builder.model.encoder import OnnxEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--faq", type=Path, default=Path("data/faq.jsonl"))
    parser.add_argument("--examples", type=Path, default=Path("data/examples.json"))
    parser.add_argument("--within", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("data/golden.json"))
    args = parser.parse_args()

    items = read_faq(args.faq)
    examples = json.loads(args.examples.read_text(encoding="utf-8"))
    keep = [True] * len(examples)
    for variant in args.variant or ["fp32"]:
        encoder = OnnxEncoder.load(args.model, variant=variant)
        passages = encoder.encode_passages([i.question for i in items])
        queries = encoder.encode_queries([e["query"] for e in examples])
        for n, scores in enumerate(queries @ passages.T):
            top = [items[j].id for j in np.argsort(-scores)[: args.within]]
            rank = top.index(examples[n]["topic"]) + 1 if examples[n]["topic"] in top else None
            print(f"{variant} {examples[n]['topic']:28s} rank {rank}")
            keep[n] = keep[n] and rank is not None
    golden = [
        {"query": e["query"], "expected_id": e["topic"]}
        for e, kept in zip(examples, keep, strict=True)
        if kept
    ]
    args.out.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(golden)} of {len(examples)} examples written to {args.out}")


if __name__ == "__main__":
    main()
