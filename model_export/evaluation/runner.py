"""The evaluation loop: models x datasets x (language, query kind) -> metrics, intervals, tests.

Results are grouped three ways: per (dataset, kind, language); per (dataset, kind) pooled over
languages (`lang = "all"`); and across datasets (`dataset = "all"`) for the headline groups
(translated, english, code-switched = cs-tgt + cs-en). Pooling concatenates queries, so the
larger dataset weighs more. Paired tests compare two models on exactly the same queries.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model_export.evaluation.encoders import DEFAULT_CACHE, ModelSpec, build_retriever
from model_export.evaluation.metrics import (
    METRICS,
    bootstrap_ci,
    paired_test,
    per_query_metrics,
)
from model_export.evaluation.queries import CODE_SWITCHED, KINDS, LoadedSet, load_eval_set

log = logging.getLogger(__name__)

TOP_K = 30
# Headline groups across datasets: name -> the kinds they pool.
GROUPS: dict[str, tuple[str, ...]] = {
    "translated": ("translated",),
    "english": ("english",),
    "code-switched": CODE_SWITCHED,
}
PerQuery = dict[str, NDArray[np.float64]]


@dataclass
class EvalConfig:
    models: list[ModelSpec]
    datasets: list[str]
    eval_dir: Path = Path("artifacts/eval")
    kinds: tuple[str, ...] = KINDS
    languages: tuple[str, ...] = ()  # empty: all in the set
    max_queries: int = 0  # per (lang, kind); 0 = all
    n_boot: int = 1000
    seed: int = 0
    compare: list[tuple[str, str]] = field(default_factory=list)
    threads: int | None = None
    cache_dir: Path = DEFAULT_CACHE

    @classmethod
    def read(cls, path: Path) -> EvalConfig:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EvalConfig:
        models = [ModelSpec.from_dict(m) for m in raw.get("models", [])]
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names in {names}")
        compare = [(str(c["a"]), str(c["b"])) for c in raw.get("compare", [])]
        for a, b in compare:
            for n in (a, b):
                if n not in names:
                    raise ValueError(f"compare names {n!r}, which is not a model")
        return cls(
            models=models,
            datasets=list(raw.get("datasets", ["debian-faq", "oscar"])),
            eval_dir=Path(raw.get("eval_dir", "artifacts/eval")),
            kinds=tuple(raw.get("kinds", KINDS)),
            languages=tuple(raw.get("languages", ())),
            max_queries=int(raw.get("max_queries", 0)),
            n_boot=int(raw.get("n_boot", 1000)),
            seed=int(raw.get("seed", 0)),
            compare=compare,
            threads=raw.get("threads"),
        )


@dataclass
class ModelRun:
    spec: ModelSpec
    status: str  # "ok" or why not
    wall_s: float = 0.0
    # (dataset, lang, kind) -> per-query metrics; and the rank of the first gold (0 = > TOP_K)
    per_query: dict[tuple[str, str, str], PerQuery] = field(default_factory=dict)
    ranks: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)


@dataclass
class EvalResults:
    config: EvalConfig
    sets: dict[str, LoadedSet]
    runs: list[ModelRun]
    wall_s: float = 0.0

    def run(self, name: str) -> ModelRun:
        return next(r for r in self.runs if r.spec.name == name)

    def pooled(self, model: str, dataset: str, kinds: Sequence[str], lang: str = "all") -> PerQuery:
        """Per-query metrics of `model` over the matching sets, concatenated in a fixed order."""
        run = self.run(model)
        keys = sorted(
            k
            for k in run.per_query
            if (dataset == "all" or k[0] == dataset)
            and k[2] in kinds
            and (lang == "all" or k[1] == lang)
        )
        if not keys:
            return {m: np.zeros(0) for m in METRICS}
        return {m: np.concatenate([run.per_query[k][m] for k in keys]) for m in METRICS}

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per model x dataset x kind x language (plus pooled rows), with intervals."""
        rows: list[dict[str, Any]] = []
        for run in self.runs:
            if run.status != "ok":
                continue
            groups: list[tuple[str, str, str, tuple[str, ...]]] = []
            for ds, lang, kind in sorted(run.per_query):
                groups.append((ds, kind, lang, (kind,)))
            for ds in sorted({k[0] for k in run.per_query}):
                for kind in self.config.kinds:
                    groups.append((ds, kind, "all", (kind,)))
                groups.append((ds, "code-switched", "all", CODE_SWITCHED))
            for gname, kinds in GROUPS.items():
                groups.append(("all", gname, "all", kinds))
            for ds, kind, lang, kinds in groups:
                pq = self.pooled(run.spec.name, ds, kinds, lang)
                n = int(pq["R@1"].size)
                if n == 0:
                    continue
                metrics: dict[str, dict[str, float]] = {}
                for m in METRICS:
                    lo, hi = bootstrap_ci(pq[m], n_boot=self.config.n_boot, seed=self.config.seed)
                    metrics[m] = {"mean": float(pq[m].mean()), "ci_low": lo, "ci_high": hi}
                rows.append(
                    {
                        "model": run.spec.name,
                        "dataset": ds,
                        "kind": kind,
                        "lang": lang,
                        "n": n,
                        "metrics": metrics,
                    }
                )
        return rows

    def comparisons(self, metrics: Sequence[str] = ("R@1", "MRR@10")) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for a, b in self.config.compare:
            if self.run(a).status != "ok" or self.run(b).status != "ok":
                continue
            targets: list[tuple[str, str, tuple[str, ...]]] = [
                ("all", g, kinds) for g, kinds in GROUPS.items()
            ]
            for ds in self.config.datasets:
                targets += [(ds, k, (k,)) for k in self.config.kinds]
                targets.append((ds, "code-switched", CODE_SWITCHED))
            for ds, group, kinds in targets:
                pa, pb = self.pooled(a, ds, kinds), self.pooled(b, ds, kinds)
                if pa["R@1"].size == 0 or pa["R@1"].size != pb["R@1"].size:
                    continue
                for m in metrics:
                    res = paired_test(
                        pa[m], pb[m], n_boot=self.config.n_boot, seed=self.config.seed
                    )
                    out.append(
                        {
                            "a": a,
                            "b": b,
                            "dataset": ds,
                            "group": group,
                            "metric": m,
                            **res.as_dict(),
                        }
                    )
        return out


def _first_gold_rank(ranked: Sequence[str], gold: Sequence[str]) -> int:
    return next((i for i, r in enumerate(ranked, 1) if r in set(gold)), 0)


def evaluate(config: EvalConfig) -> EvalResults:
    started = time.perf_counter()
    sets = {ds: load_eval_set(config.eval_dir / ds) for ds in config.datasets}
    runs: list[ModelRun] = []
    for spec in config.models:
        why = spec.missing()
        if why is not None:
            log.warning("model %s skipped: %s", spec.name, why)
            runs.append(ModelRun(spec, f"not available: {why}"))
            continue
        t0 = time.perf_counter()
        retriever = build_retriever(spec, cache_dir=config.cache_dir, threads=config.threads)
        run = ModelRun(spec, "ok")
        for ds, loaded in sets.items():
            if spec.datasets and ds not in spec.datasets:
                continue
            for (lang, kind), queries in sorted(loaded.queries.items()):
                if kind not in config.kinds:
                    continue
                if config.languages and lang != "en" and lang not in config.languages:
                    continue
                qs = queries[: config.max_queries] if config.max_queries else queries
                if not qs:
                    continue
                rankings = retriever.rank([q.query for q in qs], loaded.entries, TOP_K)
                golds = [q.gold for q in qs]
                run.per_query[(ds, lang, kind)] = per_query_metrics(rankings, golds)
                run.ranks[(ds, lang, kind)] = [
                    _first_gold_rank(r, g) for r, g in zip(rankings, golds, strict=True)
                ]
        run.wall_s = time.perf_counter() - t0
        log.info("model %s evaluated in %.1f s", spec.name, run.wall_s)
        runs.append(run)
    return EvalResults(config, sets, runs, time.perf_counter() - started)
