"""The evaluation loop: models x datasets x (language, query kind) -> metrics, intervals, tests.

Results are grouped three ways: per (dataset, kind, language); per (dataset, kind) pooled over
languages (`lang = "all"`); and across datasets (`dataset = "all"`) for the headline groups
(translated, english, code-switched = cs-tgt + cs-en). Pooling concatenates queries, so the
larger dataset weighs more. Paired tests compare two models on exactly the same queries.

The code-switching penalty of a model is R@1 on translated queries minus R@1 on the cs-tgt
queries of the same entries (the target-language question with some words in English). Only
entries that have both queries count: a cs-tgt query exists only where the switcher found a
word to replace, so comparing against every translated query would mix in other questions.
Entries are matched through the query id, `{dataset}:{lang}:{kind}:{entry_id}`.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model_export.evaluation.encoders import (
    DEFAULT_CACHE,
    ModelSpec,
    Retriever,
    build_encoder,
    build_retriever,
)
from model_export.evaluation.metrics import (
    METRICS,
    bootstrap_ci,
    paired_test,
    per_query_metrics,
)
from model_export.evaluation.queries import CODE_SWITCHED, KINDS, LoadedSet, load_eval_set
from model_export.evaluation.query_mixing import MixingRetriever, QueryMix

log = logging.getLogger(__name__)

TOP_K = 30
# Headline groups across datasets: name -> the kinds they pool.
GROUPS: dict[str, tuple[str, ...]] = {
    "translated": ("translated",),
    "english": ("english",),
    "code-switched": CODE_SWITCHED,
}
# The penalty compares the first kind with the second on the same entries.
PENALTY_KINDS = ("translated", "cs-tgt")
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
        # A misspelt key would silently fall back to its default, as in a training config.
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown settings {unknown}")
        models = [ModelSpec.from_dict(m) for m in raw.get("models", [])]
        if not models:
            raise ValueError("no [[models]] to evaluate")
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
            cache_dir=Path(raw.get("cache_dir", DEFAULT_CACHE)),
        )


@dataclass
class ModelRun:
    spec: ModelSpec
    status: str  # "ok" or why not
    wall_s: float = 0.0
    # (dataset, lang, kind) -> per-query metrics; and the rank of the first gold (0 = > TOP_K)
    per_query: dict[tuple[str, str, str], PerQuery] = field(default_factory=dict)
    ranks: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    # (dataset, lang, kind) -> the evaluated queries' ids, in the order of `per_query`
    query_ids: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)


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
            k for k in run.per_query if _in_group(k[0], k[1], dataset, lang) and k[2] in kinds
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
            # each code-switching direction pooled over datasets too
            targets += [("all", k, (k,)) for k in CODE_SWITCHED if k in self.config.kinds]
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

    def penalty_pairs(
        self, model: str, dataset: str, lang: str, metric: str = "R@1"
    ) -> tuple[list[tuple[str, str, str]], NDArray[np.float64], NDArray[np.float64]]:
        """Per entry with both a translated and a cs-tgt query in the group: the two values.

        Returns (dataset, lang, entry id) keys and the translated and cs-tgt values of
        `metric`, aligned. Translated queries whose entry has no cs-tgt query are dropped, so
        the penalty compares each question with its own code-switched version.
        """
        run = self.run(model)
        translated, switched = PENALTY_KINDS
        keys: list[tuple[str, str, str]] = []
        tr: list[float] = []
        cs: list[float] = []
        for ds, lg, kind in sorted(run.per_query):
            if kind != translated or not _in_group(ds, lg, dataset, lang):
                continue
            if (ds, lg, switched) not in run.per_query:
                continue
            tr_by_entry = _values_by_entry(run, (ds, lg, translated), metric)
            cs_by_entry = _values_by_entry(run, (ds, lg, switched), metric)
            for entry, value in tr_by_entry.items():
                if entry in cs_by_entry:
                    keys.append((ds, lg, entry))
                    tr.append(value)
                    cs.append(cs_by_entry[entry])
        return keys, np.array(tr, dtype=np.float64), np.array(cs, dtype=np.float64)

    def penalties(self, metric: str = "R@1") -> list[dict[str, Any]]:
        """Code-switching penalty per model and (dataset, lang) group, with a paired interval.

        `mean` is translated minus cs-tgt `metric` over the paired entries; the interval
        resamples entries (per-entry differences) and `p_value` tests a penalty of zero.
        `translated` and `cs_tgt` are the two means on those entries.
        """
        rows: list[dict[str, Any]] = []
        for run in self.runs:
            if run.status != "ok":
                continue
            for ds, lang in _penalty_groups(run):
                keys, tr, cs = self.penalty_pairs(run.spec.name, ds, lang, metric)
                if not keys:
                    continue
                res = paired_test(cs, tr, n_boot=self.config.n_boot, seed=self.config.seed)
                rows.append(
                    {
                        "model": run.spec.name,
                        "dataset": ds,
                        "lang": lang,
                        "metric": metric,
                        "n": res.n,
                        "mean": res.delta,
                        "ci_low": res.ci_low,
                        "ci_high": res.ci_high,
                        "p_value": res.p_value,
                        "translated": float(tr.mean()),
                        "cs_tgt": float(cs.mean()),
                    }
                )
        return rows

    def penalty_comparisons(self, metric: str = "R@1") -> list[dict[str, Any]]:
        """Penalty of b minus penalty of a per compare pair and group, paired over entries.

        Each entry contributes (b's translated - b's cs-tgt) - (a's translated - a's cs-tgt);
        a negative delta means b loses less to code-switching than a. Groups where the two
        models were evaluated on different entries are skipped, as in `comparisons`.
        """
        out: list[dict[str, Any]] = []
        for a, b in self.config.compare:
            run_a, run_b = self.run(a), self.run(b)
            if run_a.status != "ok" or run_b.status != "ok":
                continue
            groups_b = set(_penalty_groups(run_b))
            for ds, lang in [g for g in _penalty_groups(run_a) if g in groups_b]:
                keys_a, tr_a, cs_a = self.penalty_pairs(a, ds, lang, metric)
                keys_b, tr_b, cs_b = self.penalty_pairs(b, ds, lang, metric)
                if not keys_a or keys_a != keys_b:
                    continue
                pen_a, pen_b = tr_a - cs_a, tr_b - cs_b
                res = paired_test(pen_a, pen_b, n_boot=self.config.n_boot, seed=self.config.seed)
                out.append(
                    {
                        "a": a,
                        "b": b,
                        "dataset": ds,
                        "lang": lang,
                        "metric": metric,
                        "penalty_a": float(pen_a.mean()),
                        "penalty_b": float(pen_b.mean()),
                        **res.as_dict(),
                    }
                )
        return out


def _in_group(ds: str, lang: str, dataset: str, group_lang: str) -> bool:
    """Whether a (dataset, lang) set belongs to a group; "all" matches every value."""
    return (dataset == "all" or ds == dataset) and (group_lang == "all" or lang == group_lang)


def _penalty_groups(run: ModelRun) -> list[tuple[str, str]]:
    """(dataset, lang) groups to report the penalty for.

    Each language of each dataset; each dataset pooled over languages; each language pooled
    over datasets; and everything pooled (`"all"` stands for the pooled side).
    """
    sets = sorted({(ds, lang) for ds, lang, kind in run.per_query if kind == PENALTY_KINDS[0]})
    datasets = sorted({ds for ds, _ in sets})
    langs = sorted({lang for _, lang in sets})
    return (
        sets
        + [(ds, "all") for ds in datasets]
        + [("all", lang) for lang in langs]
        + [("all", "all")]
    )


def entry_of(query_id: str, lang: str, kind: str) -> str:
    """The entry id in a query id `{dataset}:{lang}:{kind}:{entry_id}`.

    The penalty pairs queries of two kinds through it. Entry ids may contain colons
    (`oscar:3f2a...`), so only the first three fields are split off.
    """
    parts = query_id.split(":", 3)
    if len(parts) != 4 or parts[1] != lang or parts[2] != kind or not parts[3]:
        raise ValueError(f"query id {query_id!r} is not '<dataset>:{lang}:{kind}:<entry id>'")
    return parts[3]


def _values_by_entry(run: ModelRun, key: tuple[str, str, str], metric: str) -> dict[str, float]:
    """Entry id -> `metric` of its query in one evaluated (dataset, lang, kind) set.

    Two queries for one entry would make the pairing ambiguous, so they are refused.
    """
    _, lang, kind = key
    ids = run.query_ids.get(key)
    values = run.per_query[key][metric]
    if ids is None or len(ids) != values.size:
        raise ValueError(f"{run.spec.name} {key}: query ids do not match the metrics")
    out: dict[str, float] = {}
    for query_id, value in zip(ids, values, strict=True):
        entry = entry_of(query_id, lang, kind)
        if entry in out:
            raise ValueError(f"{run.spec.name} {key}: two queries for entry {entry!r}")
        out[entry] = float(value)
    return out


def _first_gold_rank(ranked: Sequence[str], gold: Sequence[str]) -> int:
    return next((i for i, r in enumerate(ranked, 1) if r in set(gold)), 0)


def _ranker(
    spec: ModelSpec, config: EvalConfig, query_mix: QueryMix | None
) -> Callable[[str], Retriever]:
    """The retriever for the queries of one language (mixing needs the language)."""
    if query_mix is None or spec.kind == "http":
        retriever = build_retriever(spec, cache_dir=config.cache_dir, threads=config.threads)
        return lambda lang: retriever
    encoder = build_encoder(spec, cache_dir=config.cache_dir, threads=config.threads)
    return MixingRetriever(encoder, query_mix).for_language


def evaluate(config: EvalConfig, *, query_mix: QueryMix | None = None) -> EvalResults:
    """Score every model on every set. With `query_mix`, each dense model's query vectors are
    mixed with those of the normalised queries, by the language of each (lang, kind) set
    (`query_mixing.py`); a service (`http`) is scored as it answers."""
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
        ranker = _ranker(spec, config, query_mix)
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
                rankings = ranker(lang).rank([q.query for q in qs], loaded.entries, TOP_K)
                golds = [q.gold for q in qs]
                run.per_query[(ds, lang, kind)] = per_query_metrics(rankings, golds)
                run.query_ids[(ds, lang, kind)] = [q.id for q in qs]
                run.ranks[(ds, lang, kind)] = [
                    _first_gold_rank(r, g) for r, g in zip(rankings, golds, strict=True)
                ]
        run.wall_s = time.perf_counter() - t0
        log.info("model %s evaluated in %.1f s", spec.name, run.wall_s)
        runs.append(run)
    return EvalResults(config, sets, runs, time.perf_counter() - started)
