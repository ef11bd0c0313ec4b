"""Whether each store backend returns the exact best hits: on an index the embedded store built,
the share of queries whose exact best hit the store returns first, and recall@k by score,
both against a brute-force numpy reference (the fused formula computed over every row).

Builds the FAQ (`--faq`) with the embedded store into `--index-dir` (a temporary directory
by default; an existing index there of the same FAQ and model is reused), encodes labelled
queries (`--queries`, JSONL `{query, lang}`) with the served model (`FAQ_MODEL_DIR`,
`--variant`) and searches them with the served fusion weights (`FAQ_ANSWER_WEIGHT`,
`FAQ_LEXICAL_WEIGHT`), unfiltered and filtered by each query's language, through:

- `embedded`: the `EmbeddedStore` on that directory;
- `qdrant`: a `QdrantStore` (`--qdrant-url`, else qdrant-client's in-memory mode) holding the
  same entries with the embedded version's own vectors.

The reference scores every row under the filter: (cos_question + a cos_answer + l bm25) /
(1 + a), BM25 with Qdrant's IDF over the whole collection, no prefetch cut. A hit counts for
recall@k when its reference score reaches the reference's k-th best less `--eps` (as
ann-benchmarks counts; template questions score nearly alike); the best hit counts when its
reference score is the best's less `--eps`.

    .venv/bin/python -m tools.index_recall --faq data/faq.jsonl --queries data/shopper/dev.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient

from index_builder.faq import FaqItem, read_faq
from index_builder.model.encoder import Encoder
from index_builder.store import EmbeddedStore, Hit, QdrantStore, SearchSpec, ivf
from index_builder.store.embedded import Entries
from index_builder.store.fusion import Retrieval
from index_builder.store.lexical import Lexicon, idf
from index_builder.store.matrix import normalise

DEFAULT_QUERIES = Path("data/shopper/dev.jsonl")
DEFAULT_FAQ = Path("data/faq.jsonl")
BACKENDS = ("embedded", "qdrant")


class StoredVectors:
    """An encoder whose passage vectors are a built version's (by text); everything else, and
    any text the version does not hold, is `encoder`'s. It copies a version to another store
    without embedding it again."""

    def __init__(self, encoder: Encoder, entries: Entries) -> None:
        self._encoder = encoder
        self._vectors: dict[str, NDArray[np.float32]] = {}
        for payload, q, a in zip(entries.payloads, entries.question, entries.answer, strict=True):
            self._vectors[str(payload["question"])] = q
            self._vectors[str(payload["answer"])] = a

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        missing = [t for t in texts if t not in self._vectors]
        if missing:
            for text, vector in zip(missing, self._encoder.encode_passages(missing), strict=True):
                self._vectors[text] = vector
        return np.asarray([self._vectors[t] for t in texts], dtype=np.float32)


class Reference:
    """The fused formula over every row of one version, in numpy."""

    def __init__(self, entries: Entries, retrieval: Retrieval) -> None:
        self.ids = entries.ids
        self.position = {pid: i for i, pid in enumerate(self.ids)}
        self.langs = np.asarray([str(p.get("lang", "")) for p in entries.payloads])
        self.markets = np.asarray([str(p.get("market")) for p in entries.payloads])
        self.questions = normalise(entries.question)
        self.answers = normalise(entries.answer)
        self.retrieval = retrieval
        n = len(self.ids)
        df: dict[int, int] = {}
        for tokens, _ in entries.lexical.rows():
            for t in set(tokens):
                df[int(t)] = df.get(int(t), 0) + 1
        self.lexical: dict[int, NDArray[np.float64]] = {}
        for row, (tokens, weights) in enumerate(entries.lexical.rows()):
            for t, w in zip(tokens, weights, strict=True):
                column = self.lexical.setdefault(int(t), np.zeros(n))
                column[row] += float(w) * idf(df[int(t)], n)

    def scores(self, vector: NDArray[np.float32], spec: SearchSpec) -> NDArray[np.float64]:
        """Every row's score; -inf outside the filter."""
        wq, wa, wl = self.retrieval.weights(bool(spec.lexical))
        query = normalise(vector[None, :])[0].astype(np.float64)
        total = wq * (self.questions @ query)
        if wa > 0:
            total = total + wa * (self.answers @ query)
        if wl > 0:
            for t in spec.lexical:
                column = self.lexical.get(int(t))
                if column is not None:
                    total = total + wl * column
        keep = np.ones(len(total), dtype=bool)
        if spec.lang is not None:
            keep &= self.langs == spec.lang
        if spec.market is not None:
            keep &= self.markets == spec.market
        return np.where(keep, total, -np.inf)


@dataclass(frozen=True)
class Recall:
    queries: int
    best: float  # share of queries whose first hit is the exact best
    recall: float  # mean share of the top k that reach the reference's k-th best (less eps)


def measure(
    results: Sequence[Sequence[Hit]],
    reference: Sequence[NDArray[np.float64]],
    position: dict[str, int],
    k: int,
    eps: float = 1e-5,
) -> Recall:
    """`results[i]` (a store's hits) judged by `reference[i]` (every row's score)."""
    best_found, shares = [], []
    for hits, scores in zip(results, reference, strict=True):
        allowed = int(np.isfinite(scores).sum())
        want = min(k, allowed)
        if want == 0:
            continue
        ranked = np.sort(scores[np.isfinite(scores)])[::-1]
        got = [scores[position[h.id]] for h in hits[:k]]
        best_found.append(bool(got) and got[0] >= ranked[0] - eps)
        shares.append(sum(s >= ranked[want - 1] - eps for s in got) / want)
    return Recall(
        queries=len(shares),
        best=float(np.mean(best_found)) if best_found else 1.0,
        recall=float(np.mean(shares)) if shares else 1.0,
    )


def run(
    items: Sequence[FaqItem],
    encoder: Encoder,
    texts: Sequence[str],
    langs: Sequence[str | None],
    retrieval: Retrieval,
    index_dir: Path,
    *,
    k: int = 10,
    eps: float = 1e-5,
    qdrant: QdrantClient | None = None,
    exhaustive: bool = False,
) -> dict[str, dict[str, Recall]]:
    """{backend: {"unfiltered" | "query's language": Recall}} on an index the embedded store
    built of `items` in `index_dir`. `exhaustive`: the reference is the embedded store's own
    exact pass (every IVF list scanned) and only the embedded store is measured: the numpy
    reference holds a column per token, too much memory for 100k entries."""
    embedded = EmbeddedStore(index_dir, retrieval=retrieval)
    info, _ = embedded.build(items, encoder, skip_if_unchanged=True, progress=False)
    entries = Entries.load(index_dir / info.collection)
    stores: dict[str, EmbeddedStore | QdrantStore] = {"embedded": embedded}
    if not exhaustive:
        server = QdrantStore(
            qdrant or QdrantClient(":memory:"), alias="recall", retrieval=retrieval
        )
        server.build(items, StoredVectors(encoder, entries), progress=False)
        stores["qdrant"] = server
    vectors = encoder.encode_queries(list(texts))
    tokens = Lexicon.for_encoder(encoder).queries(list(texts))
    known = {str(p.get("lang", "")) for p in entries.payloads}
    reference = None if exhaustive else Reference(entries, retrieval)
    out: dict[str, dict[str, Recall]] = {name: {} for name in stores}
    try:
        for label, filters in (("unfiltered", [None] * len(texts)), ("query's language", langs)):
            rows = [i for i, lang in enumerate(filters) if lang is None or lang in known]
            specs = [SearchSpec(k, filters[i], None, tokens[i]) for i in rows]

            def search(
                store: EmbeddedStore | QdrantStore,
                rows: list[int] = rows,
                specs: list[SearchSpec] = specs,
            ) -> list[list[Hit]]:
                return [
                    store.search(vectors[i], s.limit, lang=s.lang, lexical=s.lexical)
                    for i, s in zip(rows, specs, strict=True)
                ]

            if reference is None:
                every = ivf.NPROBE
                ivf.NPROBE = 1 << 30  # every list: the exact pass
                try:
                    expected = search(embedded)
                finally:
                    ivf.NPROBE = every
                out["embedded"][label] = measure_hits(search(embedded), expected, k, eps)
                continue
            scores = [reference.scores(vectors[i], s) for i, s in zip(rows, specs, strict=True)]
            for name, store in stores.items():
                out[name][label] = measure(search(store), scores, reference.position, k, eps)
    finally:
        for store in stores.values():
            store.close()
    return out


def measure_hits(
    results: Sequence[Sequence[Hit]], expected: Sequence[Sequence[Hit]], k: int, eps: float
) -> Recall:
    """`results[i]` judged by the exact pass's hits `expected[i]`, by score."""
    best, shares = [], []
    for got, want in zip(results, expected, strict=True):
        if not want:
            continue
        best.append(bool(got) and got[0].score >= want[0].score - eps)
        kth = want[min(k, len(want)) - 1].score
        shares.append(sum(h.score >= kth - eps for h in got[:k]) / min(k, len(want)))
    return Recall(
        queries=len(shares),
        best=float(np.mean(best)) if best else 1.0,
        recall=float(np.mean(shares)) if shares else 1.0,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from app.core.config import Settings
    from app.main import load_onnx_encoder
    from app.services.index_guard import retrieval

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--faq", type=Path, default=DEFAULT_FAQ)
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES, help="JSONL query, lang")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--index-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--qdrant-url", default=None, help="default: in-memory qdrant-client")
    parser.add_argument("--variant", choices=("fp32", "int8", "fp16"), default=None)
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists scanned per search")
    parser.add_argument(
        "--exhaustive",
        action="store_true",
        help="judge the embedded store against its own exact pass (large FAQs: no numpy "
        "reference, no Qdrant copy)",
    )
    args = parser.parse_args(argv)
    if args.nprobe:
        ivf.NPROBE = args.nprobe
    settings = Settings()
    if args.variant:
        settings = settings.model_copy(update={"model_variant": args.variant})
    rows = [json.loads(line) for line in args.queries.read_text(encoding="utf-8").splitlines()]
    texts = [str(r["query"]) for r in rows]
    langs: list[str | None] = [r.get("lang") for r in rows]
    items = read_faq(args.faq)
    encoder = load_onnx_encoder(settings)
    fusion = retrieval(settings)
    client = QdrantClient(url=args.qdrant_url) if args.qdrant_url else None
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index_dir or Path(tmp)
        results = run(
            items,
            encoder,
            texts,
            langs,
            fusion,
            index_dir,
            k=args.top_k,
            eps=args.eps,
            qdrant=client,
            exhaustive=args.exhaustive,
        )
    print(f"{len(items)} entries, {len(texts)} queries, {fusion.describe()}:")
    for name, by_filter in results.items():
        for label, r in by_filter.items():
            print(
                f"  {name:8s} {label:17s} ({r.queries} queries): exact best hit {r.best:.3f}, "
                f"recall@{args.top_k} by score {r.recall:.3f}"
            )


if __name__ == "__main__":
    main()
