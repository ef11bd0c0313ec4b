"""Evaluation on the product's task: shopper queries against the shop's FAQ, scored per topic.

A shopper asks about a *topic* (`order-cancel`); the shop's FAQ holds that topic in several
languages (`order-cancel`, `order-cancel.es`, ...), and any of them answers the shopper. So the
entries are ranked as the service ranks them (each entry's question through the encoder's
passage side, as `faq-index build` embeds it, or `POST /search` of a running service), each
ranking is mapped to topics keeping a topic's first occurrence only, and R@1, R@3 and MRR@10 are
computed over topics: a model that puts `order-cancel.es` then `order-cancel` first has found
one topic, not two.

Results are grouped per (language, kind) of the query log (`data/shopper/*.jsonl`, see
`model_export.shopper_data`) and pooled ("all" languages and/or "all" kinds), each with a 95%
percentile bootstrap interval over queries; named pairs of models get paired differences (b - a)
with a paired bootstrap interval and a sign-flip p-value (`model_export.evaluation.metrics`).

`write_summary` writes `docs/eval/summary.json` (issue 9): `shopper_test.<model>.{r1, r3, n}` and
`controls.{debian_en, oscar_en}.<model>.r1`, the English queries of the third-party sets scored
by `runner.evaluate`, the code behind `make eval`, so a control is the number of that table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
from numpy.typing import NDArray

from index_builder.faq import FaqFileError, read_faq, topic_of
from index_builder.model.manifest import ManifestError
from model_export.evaluation import encoders
from model_export.evaluation.codeswitch_summary import (
    BASE,
    SHOP,
    SHOP_NO_CS,
    FaqScores,
    codeswitch_object,
    is_variant,
    read_scripts,
)
from model_export.evaluation.encoders import DEFAULT_CACHE, ModelSpec
from model_export.evaluation.metrics import bootstrap_ci, paired_test, per_query_metrics
from model_export.evaluation.queries import ChecksumError
from model_export.evaluation.query_mixing import MixingRetriever, QueryMix
from model_export.evaluation.runner import PENALTY_KINDS, EvalConfig, EvalResults, evaluate
from model_export.shopper_data import KINDS, ShopperQuery, load_queries

log = logging.getLogger(__name__)

# `make model` builds this one; any other ONNX directory is a trained model (`make train`).
BASE_ONNX_DIR = Path("artifacts/onnx/multilingual-e5-small")
METRICS = ("R@1", "R@3", "MRR@10")
ALL = "all"
# Topics kept per query: MRR@10 needs ten, nothing reads further.
TOP_TOPICS = 10
# `SearchRequest.top_k` allows at most 50; with at most a handful of languages per topic that is
# well over ten topics (the report records the fewest topics a service ranking reached).
HTTP_TOP_K = 50
# summary.json control name -> the third-party evaluation set (written by `faq-model eval-data`)
# whose English queries it scores.
CONTROL_SETS = {"debian_en": "debian-faq", "oscar_en": "oscar"}
# The code-switching penalty (summary.json's codeswitch.penalty): these models and every
# variant (`is_variant`), these kinds of the same third-party sets.
PENALTY_MODELS = (BASE, SHOP, SHOP_NO_CS)
# `--hard-faq DIR`: the second FAQ and its test split, laid out like data/ and data/shopper/.
HARD_FAQ_FILE = "faq.jsonl"
HARD_FAQ_TEST = "test.jsonl"
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")

PerQuery = dict[str, NDArray[np.float64]]
SourceKind = Literal["onnx", "http"]


class TaskInputError(ValueError):
    """An input the evaluation cannot use; `str()` reads `file:line: what` or `what: why`."""


@dataclass(frozen=True)
class TaskData:
    faq_path: Path
    queries_path: Path
    # (entry id, question): what `faq-index build` embeds for each entry.
    entries: list[tuple[str, str]]
    queries: list[ShopperQuery]
    queries_sha256: str

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(topic_of(e[0]) for e in self.entries)


def load_task(faq: Path, queries: Path) -> TaskData:
    """The FAQ (read and validated as the index builder does) and a query file; `TaskInputError`
    naming file and line on the first problem, unknown topics included."""
    try:
        items = read_faq(faq)
    except FaqFileError as exc:
        raise TaskInputError(str(exc)) from None
    entries = [(item.id, item.question) for item in items]
    topics = {topic_of(eid) for eid, _ in entries}
    if not queries.is_file():
        raise TaskInputError(f"{queries}: file not found")
    raw = queries.read_bytes()
    try:
        # faq=None: the topic check below reads the FAQ as parsed above (CSV too) and keeps
        # the line number, which load_queries' own check would need the file to be JSONL for.
        loaded = load_queries(queries, faq=None)
    except UnicodeDecodeError as exc:
        raise TaskInputError(f"{queries}: not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:
        raise TaskInputError(str(exc)) from None
    if not loaded:
        raise TaskInputError(f"{queries}: no queries")
    # load_queries skips blank lines (and reads with universal newlines, as read_text does), so
    # the i-th query sits on the i-th non-blank line.
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    linenos = [n for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    for q, lineno in zip(loaded, linenos, strict=False):
        if q.faq_id not in topics:
            raise TaskInputError(f"{queries}:{lineno}: faq_id {q.faq_id!r} is not a topic of {faq}")
    return TaskData(faq, queries, entries, loaded, hashlib.sha256(raw).hexdigest())


# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """A model as named on the command line: an exported ONNX directory or a service URL."""

    name: str
    kind: SourceKind
    location: str  # directory or base URL

    def spec(self, variant: str = "fp32") -> ModelSpec:
        if self.kind == "http":
            return ModelSpec(self.name, "http", url=self.location)
        return ModelSpec(self.name, "onnx", path=self.location, variant=variant)

    def build_hint(self) -> str:
        """The make target that produces this directory, for the "not found" message."""
        if Path(self.location).resolve() == BASE_ONNX_DIR.resolve() or self.name == "base":
            return "make model"
        return "make train"


def parse_source(value: str, kind: SourceKind) -> ModelSource:
    """`NAME=DIR` / `NAME=URL`, or just the location (then named after it)."""
    name, sep, location = value.partition("=")
    if not (sep and _NAME.fullmatch(name) and location):
        name, location = "", value
    if not location:
        raise TaskInputError(f"empty --{'url' if kind == 'http' else 'model'} value")
    if kind == "http":
        parsed = urlparse(location)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TaskInputError(f"--url {value!r}: expected [NAME=]http://host:port")
        return ModelSource(name or parsed.netloc, "http", location)
    return ModelSource(name or Path(location).name, "onnx", location)


def parse_sources(models: Sequence[str], urls: Sequence[str]) -> list[ModelSource]:
    sources = [parse_source(v, "onnx") for v in models] + [parse_source(v, "http") for v in urls]
    if not sources:
        raise TaskInputError("name at least one --model [NAME=]DIR or --url [NAME=]URL")
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TaskInputError(f"model name(s) used twice: {', '.join(dupes)}; use NAME=...")
    return sources


def parse_compare(values: Sequence[str], names: Sequence[str]) -> list[tuple[str, str]]:
    """`A:B` pairs; names may hold a colon (a URL's host:port), so try every split point."""
    out: list[tuple[str, str]] = []
    for value in values:
        splits = [
            (value[:i], value[i + 1 :])
            for i, c in enumerate(value)
            if c == ":" and value[:i] in names and value[i + 1 :] in names
        ]
        if len(splits) != 1:
            raise TaskInputError(
                f"--compare {value!r}: expected A:B with A and B among the models "
                f"({', '.join(names)})"
            )
        out.append(splits[0])
    return out


def check_available(sources: Sequence[ModelSource]) -> None:
    """Fail before any encoding if an ONNX directory is missing, naming what builds it."""
    for s in sources:
        why = s.spec().missing()
        if why is not None:
            raise TaskInputError(f"model {s.name!r}: {why}; build it with `{s.build_hint()}`")


# --- scoring --------------------------------------------------------------------------------


def topic_ranking(entry_ids: Sequence[str], k: int = TOP_TOPICS) -> list[str]:
    """Topics in the order their first entry appears: translations of one topic count once."""
    out: list[str] = []
    seen: set[str] = set()
    for eid in entry_ids:
        topic = topic_of(eid)
        if topic not in seen:
            seen.add(topic)
            out.append(topic)
            if len(out) == k:
                break
    return out


@dataclass
class ModelScores:
    name: str
    kind: SourceKind
    location: str
    per_query: PerQuery  # metric -> one value per query, in the order of TaskData.queries
    ranks: list[int]  # gold topic's rank among the topics, 0 = not in the top TOP_TOPICS
    min_topics: int  # fewest distinct topics a query's ranking reached (< 10: MRR@10 is short)
    variant: str = ""
    wall_s: float = 0.0


def score_rankings(
    entry_rankings: Sequence[Sequence[str]], queries: Sequence[ShopperQuery]
) -> tuple[PerQuery, list[int], int]:
    """Per-query R@1, R@3, MRR@10 over topics, the gold topic's rank, and the fewest topics."""
    topic_rankings = [topic_ranking(r) for r in entry_rankings]
    golds = [q.faq_id for q in queries]
    # per_query_metrics is the third-party table's code; with one gold topic per query its
    # R@1 and MRR@10 are the topic-level ones. It has no R@3 (its cut-offs are 1/5/10/30).
    pq = per_query_metrics(topic_rankings, [[g] for g in golds])
    r3 = np.array([float(g in r[:3]) for r, g in zip(topic_rankings, golds, strict=True)])
    ranks = [r.index(g) + 1 if g in r else 0 for r, g in zip(topic_rankings, golds, strict=True)]
    fewest = min((len(r) for r in topic_rankings), default=0)
    return {"R@1": pq["R@1"], "R@3": r3, "MRR@10": pq["MRR@10"]}, ranks, fewest


def score_model(
    source: ModelSource,
    data: TaskData,
    *,
    variant: str = "fp32",
    cache_dir: Path = DEFAULT_CACHE,
    threads: int | None = None,
    query_mix: QueryMix | None = None,
) -> ModelScores:
    """Score one model; with `query_mix`, an ONNX model's query vectors are mixed with those of
    the lexicon-normalised queries (a service is scored as it answers)."""
    t0 = time.perf_counter()
    spec = source.spec(variant)
    texts = [q.query for q in data.queries]
    if source.kind == "onnx" and query_mix is not None:
        try:
            encoder = encoders.build_encoder(spec, cache_dir=cache_dir, threads=threads)
        except ManifestError as exc:
            raise TaskInputError(f"model {source.name!r}: {exc}") from None
        mixing = MixingRetriever(encoder, query_mix)
        langs = [q.lang for q in data.queries]
        rankings = mixing.rank_queries(texts, langs, data.entries, len(data.entries))
        log.info("model %s: %d of %d queries mixed", source.name, mixing.changed, len(texts))
    elif source.kind == "http":
        retriever = encoders.build_retriever(spec, cache_dir=cache_dir, threads=threads)
        try:
            rankings = retriever.rank(texts, data.entries, HTTP_TOP_K)
        except (OSError, ValueError, KeyError) as exc:
            # Unreachable service, an error status, a body without results[].id, or ids the
            # FAQ does not hold (the service indexes another file): the user fixes the service.
            raise TaskInputError(f"model {source.name!r} ({source.location}): {exc}") from None
    else:
        try:
            retriever = encoders.build_retriever(spec, cache_dir=cache_dir, threads=threads)
        except ManifestError as exc:
            raise TaskInputError(f"model {source.name!r}: {exc}") from None
        # Every entry: with translations a topic's entries can fill the first ten places.
        rankings = retriever.rank(texts, data.entries, len(data.entries))
    per_query, ranks, fewest = score_rankings(rankings, data.queries)
    if fewest < TOP_TOPICS and fewest < len(data.topics):
        log.warning(
            "model %s: some rankings reach only %d topics; MRR@10 counts a gold topic beyond as 0",
            source.name,
            fewest,
        )
    wall = time.perf_counter() - t0
    log.info("model %s scored on %d queries in %.1f s", source.name, len(texts), wall)
    return ModelScores(
        source.name,
        source.kind,
        source.location,
        per_query,
        ranks,
        fewest,
        variant="" if source.kind == "http" else variant,
        wall_s=wall,
    )


def groups(queries: Sequence[ShopperQuery]) -> dict[tuple[str, str], NDArray[np.intp]]:
    """(lang, kind) -> query indices, with pooled rows: (lang, all), (all, kind), (all, all)."""
    members: dict[tuple[str, str], list[int]] = {}
    for i, q in enumerate(queries):
        for key in ((q.lang, q.kind), (q.lang, ALL), (ALL, q.kind), (ALL, ALL)):
            members.setdefault(key, []).append(i)
    return {k: np.array(v, dtype=np.intp) for k, v in sorted(members.items())}


def _interval(values: NDArray[np.float64], n_boot: int, seed: int) -> dict[str, float]:
    lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return {"mean": float(values.mean()), "ci_low": lo, "ci_high": hi}


@dataclass
class TaskRun:
    data: TaskData
    scores: list[ModelScores]
    compare: list[tuple[str, str]] = field(default_factory=list)
    n_boot: int = 1000
    seed: int = 0
    # control name -> model -> {r1, r1_ci, n}; empty when not computed
    controls: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    controls_note: str = "not computed: pass --controls artifacts/eval"
    wall_s: float = 0.0
    # The hard FAQ (`--hard-faq DIR`: DIR/faq.jsonl, DIR/test.jsonl) and its scores; None and
    # empty without it.
    hard_faq: TaskData | None = None
    hard_scores: list[ModelScores] = field(default_factory=list)
    # Translated and cs-tgt queries of the third-party sets for base/shop/shop_no_cs, scored by
    # `runner.evaluate` (the code-switching penalty); None without --controls.
    penalty_sets: EvalResults | None = None
    query_mix: QueryMix | None = None


def to_json(run: TaskRun) -> dict[str, Any]:
    """Everything: rows per model x (lang, kind) with intervals, paired differences, ranks."""
    grp = groups(run.data.queries)
    rows: list[dict[str, Any]] = []
    for s in run.scores:
        for (lang, kind), idx in grp.items():
            rows.append(
                {
                    "model": s.name,
                    "lang": lang,
                    "kind": kind,
                    "n": int(idx.size),
                    "metrics": {
                        m: _interval(s.per_query[m][idx], run.n_boot, run.seed) for m in METRICS
                    },
                }
            )
    by_name = {s.name: s for s in run.scores}
    comparisons: list[dict[str, Any]] = []
    for a, b in run.compare:
        for (lang, kind), idx in grp.items():
            for m in METRICS:
                res = paired_test(
                    by_name[a].per_query[m][idx],
                    by_name[b].per_query[m][idx],
                    n_boot=run.n_boot,
                    seed=run.seed,
                )
                comparisons.append(
                    {"a": a, "b": b, "lang": lang, "kind": kind, "metric": m, **res.as_dict()}
                )
    data = run.data
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "wall_s": round(run.wall_s, 1),
        "faq": str(data.faq_path),
        "faq_entries": len(data.entries),
        "topics": len(data.topics),
        "queries": str(data.queries_path),
        "queries_sha256": data.queries_sha256,
        "n_queries": len(data.queries),
        "n_boot": run.n_boot,
        "seed": run.seed,
        "top_topics": TOP_TOPICS,
        "models": {
            s.name: {
                "kind": s.kind,
                "location": s.location,
                "variant": s.variant,
                "min_topics_ranked": s.min_topics,
                "wall_s": round(s.wall_s, 1),
            }
            for s in run.scores
        },
        "results": rows,
        "comparisons": comparisons,
        "controls": run.controls,
        "controls_note": run.controls_note,
        "codeswitch": codeswitch(run),
        "hard_faq": (
            {
                "faq": str(run.hard_faq.faq_path),
                "queries": str(run.hard_faq.queries_path),
                "queries_sha256": run.hard_faq.queries_sha256,
                "ranks": {s.name: s.ranks for s in run.hard_scores},
            }
            if run.hard_faq is not None
            else None
        ),
        "query_mix": run.query_mix.describe() if run.query_mix is not None else None,
        # The penalty per model and (dataset, language) group, with its paired interval; the
        # codeswitch object holds the pooled ("all", "all") one.
        "penalties": run.penalty_sets.penalties() if run.penalty_sets is not None else [],
        # Gold topic rank per query (0: not in the top ten), in the query file's order, so
        # later analyses need not re-encode anything.
        "ranks": {s.name: s.ranks for s in run.scores},
    }


def _faq_scores(name: str, data: TaskData, scores: Sequence[ModelScores]) -> FaqScores:
    return FaqScores(
        name,
        data.queries,
        read_scripts(data.queries_path),
        {s.name: s.per_query["R@1"] for s in scores},
    )


def codeswitch(run: TaskRun) -> dict[str, Any]:
    """summary.json's `codeswitch` object (`codeswitch_summary.py`) from this run's scores."""
    faqs = [_faq_scores("shopper", run.data, run.scores)]
    hard = _faq_scores("hard_faq", run.hard_faq, run.hard_scores) if run.hard_faq else None
    if hard is not None:
        faqs.append(hard)
    return codeswitch_object(
        faqs,
        hard_faq=hard,
        third_party=run.penalty_sets,
        controls=run.controls,
        n_boot=run.n_boot,
        seed=run.seed,
        query_mix=run.query_mix.describe() if run.query_mix is not None else None,
    )


# --- reports --------------------------------------------------------------------------------


def _index(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["model"], r["lang"], r["kind"]): r for r in report["results"]}


def _pct(m: dict[str, float]) -> str:
    return f"{100 * m['mean']:.1f} [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]"


def _langs(report: dict[str, Any]) -> list[str]:
    langs = sorted({r["lang"] for r in report["results"]} - {ALL})
    # English first: it is the control among the shopper languages.
    return sorted(langs, key=lambda lang: (lang != "en", lang))


def to_markdown(report: dict[str, Any]) -> str:
    idx = _index(report)
    models = list(report["models"])
    kinds = [ALL, *(k for k in KINDS if any(key[2] == k for key in idx))]
    lines = [
        f"Shopper queries `{report['queries']}` ({report['n_queries']}) against "
        f"`{report['faq']}` ({report['faq_entries']} entries, {report['topics']} topics), "
        "scored per topic (an entry's translations count once). Percent, 95% bootstrap "
        "interval over queries.",
        "",
        "| model | " + " | ".join(f"{k} R@1 | {k} R@3" for k in kinds) + " |",
        "|---|" + "---|---|" * len(kinds),
    ]
    for m in models:
        cells = []
        for k in kinds:
            row = idx.get((m, ALL, k))
            cells += [_pct(row["metrics"][x]) if row else "-" for x in ("R@1", "R@3")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    counts = " ".join(f"{k} {idx[(models[0], ALL, k)]['n']}" for k in kinds) if models else ""
    lines += ["", f"Queries: {counts}. MRR@10 per group is in results.json."]

    langs = _langs(report)
    lines += [
        "",
        "R@1 (%) per query language, all kinds pooled:",
        "",
        "| model | " + " | ".join(langs) + " |",
        "|---|" + "---|" * len(langs),
    ]
    for m in models:
        vals = [idx.get((m, lang, ALL)) for lang in langs]
        cells = [f"{100 * v['metrics']['R@1']['mean']:.1f}" if v else "-" for v in vals]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if models:
        ns = " ".join(f"{lang} {idx[(models[0], lang, ALL)]['n']}" for lang in langs)
        lines += ["", f"Queries per language: {ns}."]

    comps = [c for c in report["comparisons"] if c["lang"] == ALL]
    if comps:
        lines += [
            "",
            "Paired differences B - A (percentage points; 95% paired bootstrap interval; "
            "sign-flip permutation p):",
            "",
            "| A | B | kind | metric | delta | 95% CI | p | n |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in comps:
            lines.append(
                f"| {c['a']} | {c['b']} | {c['kind']} | {c['metric']} | {100 * c['delta']:+.1f}"
                f" | [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] | {c['p_value']:.3g}"
                f" | {int(c['n'])} |"
            )
    if report["controls"]:
        lines += ["", "Controls (third-party English queries, R@1 %):", ""]
        names = list(report["controls"])
        lines += ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for m in models:
            cells = [
                _pct({"mean": c[m]["r1"], "ci_low": c[m]["r1_ci"][0], "ci_high": c[m]["r1_ci"][1]})
                if m in c
                else "-"
                for c in report["controls"].values()
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += codeswitch_lines(report["codeswitch"])
    lines += ["", f"Wall time {report['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def _pts(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else f"{100 * value:{'+' if signed else ''}.1f}"


def codeswitch_lines(cs: dict[str, Any]) -> list[str]:
    """Markdown lines for summary.json's `codeswitch` object (percent; "-" where null)."""
    meta = cs["meta"]
    ci = cs["code_mixed_delta_ci95"]
    interval = f" [{_pts(ci[0], True)}, {_pts(ci[1], True)}]" if ci else ""
    mix = meta["query_mix"]
    models = list(cs["penalty"])
    lines = [
        "",
        f"Code-switching (summary.json `codeswitch`; FAQs pooled: {', '.join(meta['faqs'])}"
        + (f"; query-side mixing {mix['direction']} at {mix['weight']}" if mix else "")
        + "):",
        "",
        f"- shop - shop_no_cs R@1 on code-mixed queries: "
        f"{_pts(cs['code_mixed_delta_r1'], True)}{interval} points (n {meta['code_mixed_n']})",
        "",
        "| | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
        "| penalty (translated - cs-tgt R@1) | "
        + " | ".join(_pts(cs["penalty"][m], True) for m in models)
        + " |",
        f"| romanised R@1 (n {cs['romanised']['n']}) | "
        + " | ".join(_pts(cs["romanised"][m]) for m in models)
        + " |",
        f"| hard FAQ R@1 (n {cs['hard_faq']['n'] if cs['hard_faq']['n'] is not None else '-'}) | "
        + " | ".join(_pts(cs["hard_faq"][m]) for m in models)
        + " |",
        "| English controls R@1 | "
        + " | ".join(_pts(cs["english_controls"].get(m)) for m in models)
        + " |",
    ]
    return lines


def write_results(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    paths["json"].write_text(
        json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    return paths


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's `docs/eval/summary.json`: fractions in [0, 1], keyed by the CLI's names."""
    idx = _index(report)

    def cell(model: str, lang: str, kind: str) -> dict[str, Any]:
        row = idx[(model, lang, kind)]
        mt = row["metrics"]
        return {"r1": mt["R@1"]["mean"], "r3": mt["R@3"]["mean"], "n": row["n"]}

    shopper: dict[str, Any] = {}
    for model in report["models"]:
        row = idx[(model, ALL, ALL)]
        mt = row["metrics"]
        shopper[model] = {
            **cell(model, ALL, ALL),
            "mrr10": mt["MRR@10"]["mean"],
            "r1_ci": [mt["R@1"]["ci_low"], mt["R@1"]["ci_high"]],
            "r3_ci": [mt["R@3"]["ci_low"], mt["R@3"]["ci_high"]],
            "by_lang": {lang: cell(model, lang, ALL) for lang in _langs(report)},
            "by_kind": {k: cell(model, ALL, k) for k in KINDS if (model, ALL, k) in idx},
        }
    controls: dict[str, Any] = {name: {} for name in CONTROL_SETS}
    controls.update(report["controls"])
    return {
        "shopper_test": shopper,
        "controls": controls,
        "codeswitch": report["codeswitch"],
        "meta": {
            "queries": report["queries"],
            "queries_sha256": report["queries_sha256"],
            "faq": report["faq"],
            "created": report["created"],
            "controls": report["controls_note"],
        },
    }


def write_summary(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary(report), indent=1, ensure_ascii=False, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


# --- controls and the whole run -------------------------------------------------------------


def score_controls(
    sources: Sequence[ModelSource],
    eval_dir: Path,
    *,
    variant: str = "fp32",
    cache_dir: Path = DEFAULT_CACHE,
    threads: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """R@1 on the English queries of the third-party sets, through `runner.evaluate`.

    Scored here rather than read from `make eval`'s results.json: that table names its own
    models ("e5-small base", ...) and holds none of the shop-trained ones, while this scores
    exactly the directories of this command; the cache makes a model `make eval` already
    encoded cost nothing.
    """
    specs = [s.spec(variant) for s in sources if s.kind == "onnx"]
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in CONTROL_SETS}
    if not specs:
        return out
    results = _evaluate_control_sets(
        specs, eval_dir, ("english",), cache_dir, threads, n_boot, seed
    )
    for name, dataset in CONTROL_SETS.items():
        for spec in specs:
            r1 = results.pooled(spec.name, dataset, ("english",))["R@1"]
            if r1.size:
                lo, hi = bootstrap_ci(r1, n_boot=n_boot, seed=seed)
                out[name][spec.name] = {"r1": float(r1.mean()), "r1_ci": [lo, hi], "n": r1.size}
    return out


def load_hard_faq(root: Path) -> TaskData:
    """The hard FAQ of `--hard-faq DIR`: its FAQ `DIR/faq.jsonl` and test split `DIR/test.jsonl`
    (the shopper log's format and split), read and checked as the shopper task is."""
    if not root.is_dir():
        raise TaskInputError(f"--hard-faq {root}: not a directory")
    return load_task(root / HARD_FAQ_FILE, root / HARD_FAQ_TEST)


def score_penalty_sets(
    sources: Sequence[ModelSource],
    eval_dir: Path,
    *,
    variant: str = "fp32",
    cache_dir: Path = DEFAULT_CACHE,
    threads: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    query_mix: QueryMix | None = None,
) -> EvalResults | None:
    """The translated and cs-tgt queries of the third-party sets, for the models the penalty
    is reported for (base, shop, shop_no_cs and the variants) among the ONNX ones; None when
    none is here."""
    specs = [
        s.spec(variant)
        for s in sources
        if s.kind == "onnx" and (s.name in PENALTY_MODELS or is_variant(s.name))
    ]
    if not specs:
        return None
    return _evaluate_control_sets(
        specs, eval_dir, PENALTY_KINDS, cache_dir, threads, n_boot, seed, query_mix
    )


def _evaluate_control_sets(
    specs: list[ModelSpec],
    eval_dir: Path,
    kinds: tuple[str, ...],
    cache_dir: Path,
    threads: int | None,
    n_boot: int,
    seed: int,
    query_mix: QueryMix | None = None,
) -> EvalResults:
    """`specs` on the `kinds` of queries of the third-party sets in `eval_dir`; a set that is
    missing or altered is the command's input error."""
    cfg = EvalConfig(
        models=specs,
        datasets=list(CONTROL_SETS.values()),
        eval_dir=eval_dir,
        kinds=kinds,
        n_boot=n_boot,
        seed=seed,
        threads=threads,
        cache_dir=cache_dir,
    )
    try:
        return evaluate(cfg, query_mix=query_mix)
    except (FileNotFoundError, ChecksumError) as exc:
        raise TaskInputError(
            f"--controls {eval_dir}: {exc} (build the sets with `faq-model eval-data`)"
        ) from None


def run_task(
    data: TaskData,
    sources: Sequence[ModelSource],
    *,
    compare: Sequence[tuple[str, str]] = (),
    controls_dir: Path | None = None,
    hard_faq: TaskData | None = None,
    query_mix: QueryMix | None = None,
    variant: str = "fp32",
    cache_dir: Path = DEFAULT_CACHE,
    threads: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> TaskRun:
    t0 = time.perf_counter()
    check_available(sources)
    if controls_dir is not None and not controls_dir.is_dir():
        raise TaskInputError(
            f"--controls {controls_dir}: not a directory (build it with `faq-model eval-data`)"
        )
    common: dict[str, Any] = {
        "variant": variant,
        "cache_dir": cache_dir,
        "threads": threads,
        "query_mix": query_mix,
    }
    scores = [score_model(s, data, **common) for s in sources]
    run = TaskRun(data, scores, list(compare), n_boot=n_boot, seed=seed, query_mix=query_mix)
    if hard_faq is not None:
        # A service indexes the shop's FAQ, not this one: only ONNX models are scored on it.
        run.hard_faq = hard_faq
        run.hard_scores = [score_model(s, hard_faq, **common) for s in sources if s.kind == "onnx"]
    if controls_dir is not None:
        run.penalty_sets = score_penalty_sets(
            sources, controls_dir, n_boot=n_boot, seed=seed, **common
        )
        run.controls = score_controls(
            sources,
            controls_dir,
            variant=variant,
            cache_dir=cache_dir,
            threads=threads,
            n_boot=n_boot,
            seed=seed,
        )
        skipped = [s.name for s in sources if s.kind == "http"]
        run.controls_note = f"English queries of {controls_dir}/{{debian-faq,oscar}}" + (
            f"; not for {', '.join(skipped)} (a service indexes the shop FAQ only)"
            if skipped
            else ""
        )
    run.wall_s = time.perf_counter() - t0
    return run
