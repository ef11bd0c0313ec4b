"""Recall of the approximate search on a real index and real shopper queries (issue 10).

Opens an embedded index (`--index`; by default the 100k-entry index `make bench-100k` builds),
encodes labelled shopper queries with the model that embedded it (`FAQ_MODEL_DIR`,
`--variant`, int8 by default as the bench's) and the lexicon, and searches them with the
fused formula and weights the service uses (`FAQ_ANSWER_WEIGHT`,
`FAQ_LEXICAL_WEIGHT`) at the service's fetch for top_k 5 (`fetch_limit(5)`: the 40 hits
grouping reads), unfiltered and filtered by each query's language (queries in a language the
index lacks are left out there). Each search runs on the same snapshot through the IVF
indexes (as the service does above `ANN_THRESHOLD` entries) and by the exact scan (Qdrant's
evaluation, each part cut to its prefetch), and both are compared with the formula computed
over every row, the dense parts uncut and the lexical part as its prefetch gives it (what the
IVF path claims to reproduce, `MatrixSnapshot._fuse_ann`): recall@5 and @40 by id, and by
score (a hit counts when it reaches the k-th best score less 1e-3, as ann-benchmarks counts,
since the synthetic FAQ's template questions score nearly alike). Also the p50 of one IVF
search. `tools.matrix_latency` measures the same on random vectors.

    .venv/bin/python -m tools.ann_recall        # after make bench-100k
    .venv/bin/python -m tools.ann_recall --index var/qdrant --variant fp32 --queries q.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from app.core.config import Settings
from app.main import load_onnx_encoder
from app.wiring import retrieval
from index_builder.answers import fetch_limit
from index_builder.lexical import Lexicon
from index_builder.store import FaqIndex, Hit, SearchSpec, open_client
from index_builder.store.matrix import MatrixSnapshot
from tools.matrix_latency import recall, single_searches, whole_formula

DEFAULT_INDEX = Path("var/bench-100k/qdrant-large-int8")
DEFAULT_QUERIES = Path("data/shopper/dev.jsonl")


def _within(got: Sequence[Sequence[Hit]], expected: Sequence[Sequence[Hit]], eps: float) -> float:
    """ann-benchmarks' recall: a hit counts when its score reaches the expected k-th score less
    `eps` (the synthetic FAQ's template questions have near-equal, interchangeable scores)."""
    shares = [
        sum(h.score >= e[-1].score - eps for h in g) / len(e)
        for g, e in zip(got, expected, strict=True)
        if e
    ]
    return float(np.mean(shares)) if shares else 1.0


def _exact_copy(snapshot: MatrixSnapshot) -> MatrixSnapshot:
    """The same rows, vectors and lexical weights, searched by the exact scan."""
    return MatrixSnapshot(
        snapshot.collection,
        snapshot.point_ids,
        snapshot.matrix,
        snapshot.rows,
        answers=snapshot.answers,
        lexical=snapshot.lexical,
        ann_threshold=len(snapshot) + 1,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queries", type=Path, default=DEFAULT_QUERIES, help="JSONL with query, lang"
    )
    parser.add_argument("--top-k", type=int, default=5, help="answers asked for (fetch: 8x)")
    parser.add_argument(
        "--index", type=Path, default=DEFAULT_INDEX, help="embedded Qdrant directory"
    )
    parser.add_argument(
        "--variant",
        choices=("fp32", "int8", "fp16"),
        default="int8",
        help="the model variant that embedded the index (its queries are encoded by it too)",
    )
    args = parser.parse_args(argv)
    settings = Settings().model_copy(
        update={"qdrant_path": args.index, "model_variant": args.variant}
    )
    if not settings.qdrant_path.is_dir():
        parser.error(f"{settings.qdrant_path}: no embedded index there (make bench-100k builds it)")
    rows = [json.loads(line) for line in args.queries.read_text(encoding="utf-8").splitlines()]
    texts = [str(r["query"]) for r in rows]
    langs = [str(r["lang"]) for r in rows]

    encoder = load_onnx_encoder(settings)
    fusion = retrieval(settings)
    index = FaqIndex(
        open_client(path=settings.qdrant_path), alias=settings.collection_alias, retrieval=fusion
    )
    t0 = time.perf_counter()
    approx = index.topic_entries()
    if approx is None or not approx.approximate:
        parser.error(f"{settings.qdrant_path}: the live collection is not above the IVF threshold")
    print(
        f"{settings.qdrant_path} ({settings.model_variant}): {len(approx)} entries, "
        f"loaded in {time.perf_counter() - t0:.1f} s"
    )
    exact = _exact_copy(approx)
    approx_langs = {row.lang for row in approx.rows}
    vectors = encoder.encode(texts, "query").vectors
    tokens = Lexicon.for_encoder(encoder).queries(texts)
    fetch = fetch_limit(args.top_k, group=True)
    print(
        f"{len(texts)} queries from {args.queries}, fetch {fetch} (top_k {args.top_k}), "
        f"{fusion.describe()}, one thread:"
    )
    for label, filters in (("unfiltered", [None] * len(texts)), ("query's language", langs)):
        searched = [i for i, lang in enumerate(filters) if lang is None or lang in approx_langs]
        specs = [SearchSpec(fetch, filters[i], None, tokens[i]) for i in searched]
        queries = vectors[searched]
        with threadpool_limits(1):
            whole = whole_formula(approx, queries, specs, fusion, lexical_prefetch=True)
            ivf, ms = single_searches(approx, queries, specs, fusion)
            results = {"ivf": ivf, "exact": single_searches(exact, queries, specs, fusion)[0]}
        print(f"  {label} ({len(searched)} queries), ivf p50 {np.median(ms):.2f} ms:")
        for name, got in results.items():
            at_k = [(k, [g[:k] for g in got], [w[:k] for w in whole]) for k in (args.top_k, fetch)]
            print(
                f"    {name:5s} against the uncut formula: "
                + ", ".join(
                    f"recall@{k} {recall(g, w):.3f} (score within 1e-3: {_within(g, w, 1e-3):.3f})"
                    for k, g, w in at_k
                )
            )


if __name__ == "__main__":
    main()
