"""`faq-model evaluate-answers`: "answers a shopper can use", measured per model.

Both abstain figures (off-topic test split abstained, shopper test split wrongly refused),
grouping on/off, the served language, and the answer and lexical parts on/off. Scores are the
served ones: `model_export.calibrate.FaqSearch` searches the FAQ as the service does, and the
abstain rule is the one `faq-model calibrate` stores with the model (calibrated on dev here when
none is stored for this FAQ and these weights).

Mounted on `faq-model` by `register(app)`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from index_builder.answers.calibration import AbstainRule, Vectors
from index_builder.answers.grouping import ENGLISH, Answer, fetch_limit, group_by_topic
from index_builder.answers.query_lang import QueryLanguageDetector
from index_builder.model.encoder import Encoder
from index_builder.store.fusion import DENSE_ONLY, Retrieval
from model_export.calibrate import AnswerWeight, FaqSearch, LexicalWeight, ScoredEntry
from model_export.calibration import SHOPPER_DIR, LabelledQuery, OffTopicQuery, load_labelled

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "data" / "examples.json"


@dataclass(frozen=True)
class Example:
    query: str
    topic: str
    langs: tuple[str, ...]


def load_examples(path: Path = EXAMPLES) -> list[Example]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [Example(r["query"], r["topic"], tuple(r.get("langs") or ())) for r in rows]


def expected_lang(wanted: Sequence[str], available: set[str]) -> set[str]:
    """The languages an answer may be served in: any wanted one the topic has, else English."""
    hit = {lang for lang in wanted if lang in available}
    return hit or ({ENGLISH} if ENGLISH in available else available)


@dataclass
class GroupingFigures:
    queries: int = 0
    distinct3_on: int = 0
    distinct3_off: int = 0
    top1_on: int = 0
    top3_on: int = 0
    top3_off: int = 0
    lang_follows: int = 0
    lang_requested: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def pct(self, n: int) -> float:
        return 100.0 * n / max(1, self.queries)


def grouping_figures(
    faq: FaqSearch,
    queries: Sequence[str],
    topics: Sequence[str],
    wanted_langs: Sequence[Sequence[str]],
    detector: QueryLanguageDetector,
    *,
    top_k: int = 3,
    request_lang: str | None = "de",
) -> GroupingFigures:
    """Distinct topics in the top 3 with grouping on and off, topic recall, served language.

    Served language: the top answer's language is one the query is written in (its label) when
    the topic has it, else English. Requested: with `lang=request_lang` in the request, the top
    answer is in it when its topic has an entry in it.
    """
    vectors = faq.encoder.encode_queries(list(queries))
    limit = fetch_limit(top_k, group=True)
    hits = faq.search(queries, vectors, limit)
    figures = GroupingFigures(queries=len(queries))
    for i, (text, topic, wanted, row) in enumerate(
        zip(queries, topics, wanted_langs, hits, strict=True)
    ):
        detected = detector.detect(text)
        off = group_by_topic(row, top_k, group=False)
        # As the service does: an entry in the wanted language that was not fetched is looked
        # up in the index's snapshot.
        on: list[Answer[ScoredEntry]] = group_by_topic(
            row, top_k, detected=detected, lookup=faq.lookup(vectors[i])
        )
        figures.distinct3_on += len({a.topic for a in on}) == top_k
        figures.distinct3_off += len({a.topic for a in off}) == top_k
        figures.top1_on += bool(on) and on[0].topic == topic
        figures.top3_on += topic in {a.topic for a in on}
        figures.top3_off += topic in {a.topic for a in off}
        if on:
            first = on[0]
            figures.reasons[first.lang_reason] = figures.reasons.get(first.lang_reason, 0) + 1
            available = faq.topic_langs.get(first.topic, set())
            figures.lang_follows += first.hit.lang in expected_lang(wanted, available)
        if request_lang is not None:
            chosen = group_by_topic(
                row, top_k, requested=request_lang, detected=detected, lookup=faq.lookup(vectors[i])
            )
            if chosen:
                available = faq.topic_langs.get(chosen[0].topic, set())
                figures.lang_requested += chosen[0].hit.lang in expected_lang(
                    [request_lang], available
                )
    return figures


def detection_figures(
    detector: QueryLanguageDetector, rows: Sequence[LabelledQuery], faq_languages: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Per kind of query: (right, total) of the detected language. A query in a FAQ language
    should be detected as it (code-mixed: its matrix language, the label); one in another
    language as none (its answers fall back to English)."""
    out: dict[str, tuple[int, int]] = {}
    for q in rows:
        in_faq = q.lang in faq_languages
        key = q.kind if in_faq else "other language"
        expected = q.lang if in_faq else None
        right, total = out.get(key, (0, 0))
        out[key] = (right + (detector.detect(q.query) == expected), total + 1)
    return out


@dataclass(frozen=True)
class AbstainFigures:
    offtopic_test: int
    offtopic_abstained: float
    shopper_test: int
    shopper_refused: float
    by_kind: dict[str, tuple[int, int]]


def abstain_figures(
    faq: FaqSearch,
    rule: AbstainRule,
    offtopic: Sequence[OffTopicQuery],
    answerable: Sequence[LabelledQuery],
) -> AbstainFigures:
    def answered(texts: Sequence[str]) -> list[bool]:
        vectors = faq.encoder.encode_queries(list(texts))
        top = faq.top_scores(texts, vectors)
        return [rule.answered(float(t), v)[0] for t, v in zip(top, vectors, strict=True)]

    off = answered([q.query for q in offtopic])
    ans = answered([q.query for q in answerable])
    by_kind: dict[str, tuple[int, int]] = {}
    for q, a in zip(offtopic, off, strict=True):
        done, total = by_kind.get(q.kind, (0, 0))
        by_kind[q.kind] = (done + (not a), total + 1)
    return AbstainFigures(
        offtopic_test=len(off),
        offtopic_abstained=100.0 * (len(off) - sum(off)) / max(1, len(off)),
        shopper_test=len(ans),
        shopper_refused=100.0 * (len(ans) - sum(ans)) / max(1, len(ans)),
        by_kind=by_kind,
    )


@dataclass(frozen=True)
class QuerySet:
    """Labelled queries encoded once, for figures under several fusion weights."""

    queries: list[str]
    topics: list[str]
    vectors: Vectors

    @classmethod
    def encode(cls, encoder: Encoder, queries: Sequence[str], topics: Sequence[str]) -> QuerySet:
        return cls(list(queries), list(topics), encoder.encode_queries(list(queries)))


def retrieval_figures(faq: FaqSearch, queries: QuerySet, top_k: int = 3) -> tuple[float, float]:
    """% of queries whose topic is the first answer, and among the first `top_k` answers (one
    per topic, as the service groups them)."""
    rows = faq.search(queries.queries, queries.vectors, fetch_limit(top_k, group=True))
    first = within = 0
    for row, topic in zip(rows, queries.topics, strict=True):
        answers = [a.topic for a in group_by_topic(row, top_k)]
        first += bool(answers) and answers[0] == topic
        within += topic in answers
    n = max(1, len(queries.queries))
    return 100.0 * first / n, 100.0 * within / n


def shopper_split(split: str, shopper_dir: Path = SHOPPER_DIR) -> list[LabelledQuery]:
    return load_labelled(shopper_dir / f"{split}.jsonl")


# --- the command --------------------------------------------------------------------------------

_FUSION = Retrieval()
# The grid the fusion defaults were chosen on (`evaluate-answers --grid`, dev split only).
FUSION_GRID_ANSWER = (0.0, 0.25, 0.5, 0.75, 1.0)
FUSION_GRID_LEXICAL = (0.0, 0.001, 0.003, 0.005, 0.01)

DEFAULT_MODELS = (
    ("base", Path("artifacts/onnx/multilingual-e5-small")),
    ("shop", Path("artifacts/onnx/shop")),
)


def _parse_models(values: list[str] | None) -> list[tuple[str, Path]]:
    if not values:
        return [(n, p) for n, p in DEFAULT_MODELS if (p / "manifest.json").is_file()]
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        out.append((name, Path(path)) if sep else (Path(v).name, Path(v)))
    return out


def evaluate_answers(
    faq: Annotated[Path, typer.Option(help="FAQ file (.jsonl or .csv).")] = Path("data/faq.jsonl"),
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=DIR of an exported model; repeat. Default: base and shop."),
    ] = None,
    shopper_dir: Annotated[Path, typer.Option(help="dev.jsonl and test.jsonl.")] = Path(
        "data/shopper"
    ),
    offtopic: Annotated[Path, typer.Option()] = Path("data/offtopic/queries.jsonl"),
    examples: Annotated[Path, typer.Option(help="README examples.")] = Path("data/examples.json"),
    low_accuracy: Annotated[
        bool, typer.Option(help="Lingua's low-accuracy mode for the query language.")
    ] = True,
    variant: Annotated[
        str,
        typer.Option(
            envvar="FAQ_MODEL_VARIANT",
            help="The variant measured (fp32, int8, fp16), with the rule calibrated on it.",
        ),
    ] = "fp32",
    answer_weight: AnswerWeight = _FUSION.answer_weight,
    lexical_weight: LexicalWeight = _FUSION.lexical_weight,
    grid: Annotated[
        bool,
        typer.Option(help="Also print the fusion weight grid on the shopper dev split (tuning)."),
    ] = False,
) -> None:
    """Both abstain figures (off-topic test split abstained, shopper test split wrongly refused),
    grouping on/off, the served language, and the answer and lexical parts on/off, per model,
    in one run."""
    from index_builder.faq import FaqFileError, content_hash, read_faq
    from index_builder.model.encoder import OnnxEncoder
    from index_builder.model.manifest import ManifestError, ModelManifest
    from model_export.calibrate import calibrate_model, rule_for
    from model_export.calibration import CalibrationDataError, load_offtopic

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:  # faq-model's INFO; -v keeps its DEBUG
        logging.getLogger().setLevel(logging.WARNING)
    models = _parse_models(model)
    if not models:
        typer.echo("error: no model found (make model, or --model NAME=DIR)", err=True)
        raise typer.Exit(2)
    try:
        items = read_faq(faq)
        dev = load_labelled(shopper_dir / "dev.jsonl")
        test = load_labelled(shopper_dir / "test.jsonl")
        off_dev = load_offtopic("dev", offtopic)
        off_test = load_offtopic("test", offtopic)
        ex = load_examples(examples)
    except (FaqFileError, CalibrationDataError, OSError, ValueError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    languages = sorted({i.lang for i in items})
    started = time.perf_counter()
    detector = QueryLanguageDetector(languages, low_accuracy=low_accuracy)
    built_s = time.perf_counter() - started
    texts = [q.query for q in test]
    typer.echo(
        f"query language: Lingua {'low' if low_accuracy else 'high'} accuracy, built in "
        f"{built_s:.2f} s, {ms_per_query(detector, texts):.3f} ms/query over {len(texts)} queries"
    )
    detected = detection_figures(detector, test, languages)
    typer.echo(
        "  detected right on the shopper test split: "
        + ", ".join(f"{k} {100 * r / t:.1f}% of {t}" for k, (r, t) in sorted(detected.items()))
    )
    digest = content_hash(items)
    for name, model_dir in models:
        try:
            encoder = OnnxEncoder.load(model_dir, variant=variant)
            stored = ModelManifest.read(model_dir).calibration(variant)
        except ManifestError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        fusion = Retrieval(answer_weight=answer_weight, lexical_weight=lexical_weight)
        dense = FaqSearch(items, encoder, fusion)
        source = "manifest"
        if stored is None or stored.faq_hash != digest or stored.retrieval != fusion.describe():
            _, stored = calibrate_model(dense, dev, off_dev, variant=variant)
            source = (
                f"calibrated now on dev (none stored for {variant}, this FAQ and these weights)"
            )
        rule = rule_for(dense, stored)
        ab = abstain_figures(dense, rule, off_test, test)
        kinds = ", ".join(f"{k} {d}/{t}" for k, (d, t) in sorted(ab.by_kind.items()))
        typer.echo(
            f"\n## {name} ({model_dir}, {variant}): min_score {stored.min_score:.4f}, off-topic "
            f"weight {stored.offtopic_weight} ({source}); score: {fusion.describe()}\n"
            f"abstain: off-topic test split abstained {ab.offtopic_abstained:.1f}% of "
            f"{ab.offtopic_test} (target >= 90%); shopper test split wrongly refused "
            f"{ab.shopper_refused:.1f}% of {ab.shopper_test} (target <= 3%)\n"
            f"  abstained by kind: {kinds}"
        )
        typer.echo(
            "| set | queries | 3 distinct topics, grouping on | off | topic in top 3 on | off "
            "| top answer in the query's language | in the requested (de) |"
        )
        typer.echo("|---|---|---|---|---|---|---|---|")
        sets = (
            ("shopper test", [q.query for q in test], [q.topic for q in test],
             [[q.lang] for q in test]),
            ("README examples", [e.query for e in ex], [e.topic for e in ex],
             [list(e.langs) for e in ex]),
        )  # fmt: skip
        for label, qs, topics, langs in sets:
            g = grouping_figures(dense, qs, topics, langs, detector)
            typer.echo(
                f"| {label} | {g.queries} | {g.pct(g.distinct3_on):.1f}% | "
                f"{g.pct(g.distinct3_off):.1f}% | {g.pct(g.top3_on):.1f}% | "
                f"{g.pct(g.top3_off):.1f}% | {g.pct(g.lang_follows):.1f}% | "
                f"{g.pct(g.lang_requested):.1f}% |"
            )
        typer.echo(
            "\nanswer and lexical parts on/off (grouping on, top 3; topic top 1 / in top 3):\n"
            "| score | shopper dev top 1 | top 3 | shopper test top 1 | top 3 "
            "| README examples top 1 | top 3 |\n|---|---|---|---|---|---|---|"
        )
        # Each set encoded once for every weighting below.
        query_sets = {
            "dev": QuerySet.encode(encoder, [q.query for q in dev], [q.topic for q in dev]),
            "test": QuerySet.encode(encoder, [q.query for q in test], [q.topic for q in test]),
            "examples": QuerySet.encode(encoder, [e.query for e in ex], [e.topic for e in ex]),
        }
        for label, parts in retrieval_variants(fusion):
            fig = {
                name: retrieval_figures(dense.with_retrieval(parts), queries)
                for name, queries in query_sets.items()
            }
            typer.echo(
                f"| {label} | "
                + " | ".join(f"{fig[n][0]:.1f}% | {fig[n][1]:.1f}%" for n in fig)
                + " |"
            )
        if grid:
            typer.echo("\nfusion weights on the shopper dev split (topic top 1 / in top 3):")
            for a in FUSION_GRID_ANSWER:
                cells = []
                for lex in FUSION_GRID_LEXICAL:
                    parts = Retrieval(answer_weight=a, lexical_weight=lex)
                    first, top3 = retrieval_figures(dense.with_retrieval(parts), query_sets["dev"])
                    cells.append(f"lexical {lex:g}: {first:.1f}/{top3:.1f}")
                typer.echo(f"  answer {a:g}: " + ", ".join(cells))


def register(app: typer.Typer) -> None:
    """Add `evaluate-answers` to a typer app (`faq-model`)."""
    app.command("evaluate-answers")(evaluate_answers)


def ms_per_query(detector: QueryLanguageDetector, texts: Sequence[str]) -> float:
    """Average milliseconds of `detect` over `texts` (one thread, models loaded)."""
    start = time.perf_counter()
    for text in texts:
        detector.detect(text)
    return (time.perf_counter() - start) * 1000.0 / max(1, len(texts))


def retrieval_variants(served: Retrieval) -> list[tuple[str, Retrieval]]:
    """The served weights and each part switched off, for the on/off figures."""
    a, lex = served.answer_weight, served.lexical_weight
    return [
        ("question only", DENSE_ONLY),
        (f"+ answer ({a:g})", Retrieval(answer_weight=a, lexical_weight=0.0)),
        (f"+ lexical ({lex:g})", Retrieval(answer_weight=0.0, lexical_weight=lex)),
        (f"+ answer + lexical (served: {served.describe()})", served),
    ]
