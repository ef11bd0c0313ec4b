"""In-process latency of the embedded search at 100k entries: the per-part prefetch path vs the
large-index path (`MatrixSnapshot._search_large`).

Builds one random hybrid snapshot (question + answer vectors, lexical weights) twice, with the
row threshold at its size (every part prefetched, as Qdrant evaluates the formula) and below it
(the large path: the dense parts as one inner product with question + w x answer, their best
rows proposed by the IVF index of `index_builder/store/ivf.py`), and times
single fused searches (top_k 24, the served weights), unfiltered and filtered by one language
of six, one thread (the service caps numpy's BLAS at its worker threads). It prints the build
times, p50/p99 per search, the recall@24 of the large path's results against the prefetch
path's, and of both against the formula computed over every row (no prefetch cut: under a
narrow filter the prefetch path's per-part prefetches reorder the flat tail of the scores,
which the large path, scoring both dense parts of every row it finds, does not).

The vectors are random unit vectors grouped around random topics with a shared component (a
sentence encoder's vectors are anisotropic and clustered; uniform random vectors have no
structure for any index to use and are the worst case, `--uniform`); each query is a noisy copy
of one stored question (a paraphrase). Lexical token ids are Zipf-distributed over a 250k
vocabulary (~30 per entry, ~8 per query), so common ids have postings of most rows.

    .venv/bin/python -m tools.matrix_latency            # 100,000 x 384, 300 queries
    .venv/bin/python -m tools.matrix_latency --rows 30000 --queries 100
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from index_builder.store.base import Hit, Row, SearchSpec
from index_builder.store.fusion import Retrieval
from index_builder.store.matrix import LARGE_ROWS, MatrixSnapshot, normalise

LANGS = ("en", "es", "id", "th", "de", "pt")
VOCAB = 250_000


def _tokens(rng: np.random.Generator, draws: int) -> tuple[list[int], list[float]]:
    ids = np.unique(np.minimum(rng.zipf(1.15, draws), VOCAB))
    return [int(t) for t in ids], [float(w) for w in rng.uniform(0.3, 2.0, len(ids))]


class Data:
    def __init__(self, rows: int, dim: int, queries: int, uniform: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        if uniform:
            self.questions = normalise(rng.standard_normal((rows, dim)))
            self.answers = normalise(rng.standard_normal((rows, dim)))
        else:
            topics = normalise(rng.standard_normal((max(1, rows // 30), dim)))
            common = normalise(rng.standard_normal((1, dim)))
            topic = rng.integers(0, len(topics), rows)

            def around(noise: float) -> NDArray[np.float32]:
                spread = rng.standard_normal((rows, dim)) * noise
                return normalise(0.8 * common + topics[topic] + spread)

            self.questions = around(0.045)
            self.answers = around(0.055)
        self.lexical = [_tokens(rng, 45) for _ in range(rows)]
        self.ids = [f"e-{i}" for i in range(rows)]
        self.rows = [
            Row(f"e-{i}", f"q{i}", f"a{i}", LANGS[i % len(LANGS)], None, (), "")
            for i in range(rows)
        ]
        near = rng.integers(0, rows, queries)
        if uniform:
            self.queries = normalise(rng.standard_normal((queries, dim)))
        else:
            self.queries = normalise(
                self.questions[near] + rng.standard_normal((queries, dim)) * 0.04
            )
        self.query_tokens = [
            tuple(sorted({*_tokens(rng, 8)[0], *self.lexical[i][0][:2]})) for i in near
        ]

    def snapshot(self, threshold: int) -> MatrixSnapshot:
        return MatrixSnapshot(
            "bench",
            self.ids,
            self.questions,
            self.rows,
            answers=self.answers,
            lexical=self.lexical,
            large_rows=threshold,
        )


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = make()
    return value, time.perf_counter() - start


def single_searches(
    snapshot: MatrixSnapshot,
    queries: NDArray[np.float32],
    specs: Sequence[SearchSpec],
    retrieval: Retrieval,
) -> tuple[list[list[Hit]], NDArray[np.float64]]:
    """Each query searched alone (as a lone request is), its hits and its time in ms."""
    hits: list[list[Hit]] = []
    times = []
    for query, spec in zip(queries[: len(specs)], specs, strict=True):
        start = time.perf_counter()
        hits.append(snapshot.search_batch(query[None, :], [spec], retrieval)[0])
        times.append(time.perf_counter() - start)
    return hits, np.asarray(times) * 1e3


def whole_formula(
    snapshot: MatrixSnapshot,
    queries: NDArray[np.float32],
    specs: Sequence[SearchSpec],
    retrieval: Retrieval,
    *,
    lexical_prefetch: bool = False,
) -> list[list[Hit]]:
    """The best rows by the fused formula computed over every row under the filter (no
    prefetch cut), for each of `queries` (unit vectors). With `lexical_prefetch` the lexical
    part counts only for the rows of its prefetch, as served: then only the dense parts are
    uncut, which is what the large path (`MatrixSnapshot._search_large`) reproduces."""
    postings = snapshot._postings
    assert postings is not None and snapshot.answers is not None
    found: list[list[Hit]] = []
    for query, spec in zip(queries, specs, strict=True):
        wq, wa, wl = retrieval.weights(bool(spec.lexical))
        rows = snapshot._selection(spec.lang, spec.market)
        if lexical_prefetch:
            lexical = np.zeros(len(snapshot), dtype=np.float32)
            fetch = retrieval.prefetch_limit(spec.limit)
            prefetched, scores = postings.best(spec.lexical, fetch, rows)
            lexical[prefetched] = scores
        else:
            lexical = postings.scores(spec.lexical)
        total = wq * (snapshot.matrix @ query) + wa * (snapshot.answers @ query) + wl * lexical
        rows = np.arange(len(total)) if rows is None else rows
        best = rows[np.argsort(-total[rows])[: spec.limit]]
        found.append([snapshot.rows[i].hit(float(total[i])) for i in best])
    return found


def recall(got: Sequence[Sequence[Hit]], expected: Sequence[Sequence[Hit]]) -> float:
    """Mean share of each expected result's ids that the other result holds."""
    shares = [
        len({h.id for h in g} & {h.id for h in e}) / max(1, len(e))
        for g, e in zip(got, expected, strict=True)
    ]
    return float(np.mean(shares))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=24)
    parser.add_argument("--uniform", action="store_true", help="uniform random vectors")
    args = parser.parse_args(argv)

    data, made = _timed(lambda: Data(args.rows, args.dim, args.queries, args.uniform))
    print(f"{args.rows} x {args.dim} random hybrid entries ({made:.1f} s to generate)")
    exact, exact_build = _timed(lambda: data.snapshot(args.rows))
    large, large_build = _timed(lambda: data.snapshot(min(LARGE_ROWS, args.rows - 1)))
    served = Retrieval()
    assert large._uncut(served) and not exact._uncut(served)
    print(f"snapshot build: prefetch path {exact_build:.2f} s, large path {large_build:.2f} s")

    with threadpool_limits(limits=1, user_api="blas"):
        print(f"single searches, top_k {args.top_k}, one thread, {args.queries} queries:")
        for label, lang in (("fused", None), ("fused, lang filter", "es")):
            specs = [SearchSpec(args.top_k, lang, None, t) for t in data.query_tokens]
            results = {}
            for name, snapshot in (("exact", exact), ("large", large)):
                # Warm-up (the filter's selection).
                single_searches(snapshot, data.queries, specs[:20], served)
                hits, ms = single_searches(snapshot, data.queries, specs, served)
                results[name] = hits
                print(
                    f"  {label:20s} {name:5s} p50 {np.percentile(ms, 50):6.2f} ms"
                    f"  p99 {np.percentile(ms, 99):6.2f} ms"
                )
            print(
                f"  {label:20s} recall@{args.top_k} "
                f"{recall(results['large'], results['exact']):.3f}"
            )
            # Against the formula over every row, the lexical part as its prefetch gives it.
            whole = whole_formula(
                exact, data.queries[: len(specs)], specs, served, lexical_prefetch=True
            )
            print(
                f"  {label:20s} recall@{args.top_k} against the uncut formula: "
                f"exact {recall(results['exact'], whole):.3f}, "
                f"large {recall(results['large'], whole):.3f}"
            )
        specs = [SearchSpec(args.top_k) for _ in data.query_tokens]
        _, ms = single_searches(exact, data.queries, specs, Retrieval(0.0, 0.0))
        print(f"  question only       exact p50 {np.percentile(ms, 50):6.2f} ms")


if __name__ == "__main__":
    main()
