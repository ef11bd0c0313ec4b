"""The quality gate: golden queries that a new collection must answer before it serves.

Each golden query names the FAQ entry it must find within its top k. The gate runs against the
new collection by name, after every entry is stored and before the alias moves
(the store's `build(validate=...)` hook), so a failing collection never serves a single request.
Both writers of the index use it: `faq-index build --golden` and the service's admin reindex
(`FAQ_GOLDEN_QUERIES`), so that one golden file means the same thing to both.

`match` says what counts as finding the entry:

* `"id"` (the default): a hit whose id is `expected_id` exactly.
* `"topic"`: a hit of the topic `expected_id`, i.e. the entry `expected_id` or any of its
  translations (`order-cancel`, `order-cancel.es`, ...; `index_builder.faq.topic_of`). The
  shop task labels queries by topic and the service answers a Spanish query with the Spanish
  entry as rightly as with the English one, so golden queries drawn from labelled queries
  (`draw_golden`, `faq-index golden`) use it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from index_builder.encoder import Encoder
from index_builder.faq import FaqItem, topic_of
from index_builder.lexical import Lexicon
from index_builder.store import EmbeddedStore, IndexBuildError, Store

Match = Literal["id", "topic"]


class GoldenQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    query: str = Field(min_length=1)
    expected_id: str = Field(min_length=1)
    top_k: int | None = Field(None, ge=1, le=100)
    match: Match = Field("id", description='"id": that entry; "topic": it or a translation.')

    @model_validator(mode="after")
    def _topic_has_no_suffix(self) -> GoldenQuery:
        # `order-cancel.es` as a topic would match nothing, and silently fail every build.
        if self.match == "topic" and topic_of(self.expected_id) != self.expected_id:
            raise ValueError(
                f"expected_id {self.expected_id!r} is an entry, not a topic: with match "
                f'"topic" give {topic_of(self.expected_id)!r}'
            )
        return self

    def rank_in(self, ids: Sequence[str]) -> int | None:
        """1-based rank of the first hit that answers this query, None when none does."""
        for rank, hit in enumerate(ids, start=1):
            found = topic_of(hit) if self.match == "topic" else hit
            if found == self.expected_id:
                return rank
        return None


class GoldenResult(BaseModel):
    query: str
    expected_id: str
    match: Match = "id"
    top_k: int
    rank: int | None = Field(description="1-based rank of expected_id, null when not in top_k.")
    passed: bool
    top_ids: list[str] = Field(description="What the new collection answered, best first.")


class GateReport(BaseModel):
    passed: bool
    total: int
    failed: int
    results: list[GoldenResult]

    def failures(self) -> list[GoldenResult]:
        return [r for r in self.results if not r.passed]


class GoldenFileError(ValueError):
    """The golden queries file (or the labelled queries to draw them from) cannot be used; the
    message names the file and the entry."""


class QualityGateError(IndexBuildError):
    """The new collection failed golden queries; it is deleted and the alias stays."""

    def __init__(self, report: GateReport) -> None:
        self.report = report
        failed = report.failures()
        listed = "; ".join(
            f"{r.query!r} expected {r.expected_id} in top {r.top_k}, got "
            f"{', '.join(r.top_ids[:3]) or 'nothing'}"
            for r in failed[:5]
        )
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(
            f"quality gate failed: {len(failed)} of {report.total} golden queries missed their "
            f"FAQ: {listed}{more}"
        )


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
    )


def load_golden(path: Path) -> list[GoldenQuery]:
    """Read a JSON list, or JSONL with one object per line, of golden queries."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GoldenFileError(f"cannot read the golden queries file {path}: {exc}") from None
    rows: list[tuple[int, object]]
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GoldenFileError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        rows = [(n, row) for n, row in enumerate(data, start=1)]
        where = "entry"
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise GoldenFileError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
        where = "line"
    golden = []
    for n, row in rows:
        try:
            golden.append(GoldenQuery.model_validate(row))
        except ValidationError as exc:
            raise GoldenFileError(f"{path} {where} {n}: {_describe(exc)}") from None
    if not golden:
        raise GoldenFileError(f"{path} holds no golden queries")
    return golden


class QualityGate:
    def __init__(
        self, golden: Sequence[GoldenQuery], encoder: Encoder, default_top_k: int = 5
    ) -> None:
        self.golden = list(golden)
        self.encoder = encoder
        self.default_top_k = default_top_k

    def check(self, index: Store, collection: str) -> GateReport:
        texts = [g.query for g in self.golden]
        vectors = self.encoder.encode_queries(texts)
        # Searched as the service searches: with the lexical part's tokens.
        lexical = Lexicon.for_encoder(self.encoder).queries(texts)
        results = []
        for g, vector, tokens in zip(self.golden, vectors, lexical, strict=True):
            top_k = g.top_k or self.default_top_k
            hits = index.search(vector, top_k, lexical=tokens, collection=collection)
            ids = [h.id for h in hits]
            rank = g.rank_in(ids)
            results.append(
                GoldenResult(
                    query=g.query,
                    expected_id=g.expected_id,
                    match=g.match,
                    top_k=top_k,
                    rank=rank,
                    passed=rank is not None,
                    top_ids=ids,
                )
            )
        failed = sum(not r.passed for r in results)
        return GateReport(passed=failed == 0, total=len(results), failed=failed, results=results)


# --- drawing golden queries from labelled queries (a dev split) ---------------------------------


class LabelledQuery(BaseModel):
    """A row of a labelled query file (`data/shopper/dev.jsonl`); other fields are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    query: str = Field(min_length=1)
    faq_id: str = Field(min_length=1, description="The topic: the English entry's id.")


def load_labelled(path: Path, topics: Sequence[str]) -> list[LabelledQuery]:
    """JSONL rows `{query, faq_id, ...}`; GoldenFileError naming file and line on the first
    bad row or on a `faq_id` that is no topic of the FAQ."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GoldenFileError(f"cannot read the labelled queries file {path}: {exc}") from None
    known = set(topics)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = LabelledQuery.model_validate_json(line)
        except ValidationError as exc:
            raise GoldenFileError(f"{path}:{lineno}: {_describe(exc)}") from None
        if row.faq_id not in known:
            raise GoldenFileError(f"{path}:{lineno}: faq_id {row.faq_id!r} is no topic of the FAQ")
        rows.append(row)
    if not rows:
        raise GoldenFileError(f"{path} holds no labelled queries")
    return rows


def _draw_order(query: str) -> str:
    # A stable hash, not the file's order: the choice does not change when rows are re-ordered
    # or added to other topics, and it does not favour whatever the file lists first.
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


@dataclass
class Drawn:
    golden: list[GoldenQuery]
    tried: int  # labelled queries asked of the model(s)
    within: int  # of those, how many every model ranked within top k
    topics: int  # topics of the FAQ
    missing: list[str] = field(default_factory=list)  # topics that got no golden query


def draw_golden(
    rows: Sequence[LabelledQuery],
    items: Sequence[FaqItem],
    encoders: Sequence[Encoder],
    *,
    per_topic: int = 1,
    top_k: int = 5,
) -> Drawn:
    """Up to `per_topic` queries per topic, in `_draw_order`, that every encoder's index answers
    with the topic within `top_k`.

    Each query is checked by the gate itself against a collection of `items` in a temporary
    embedded store, so a query drawn here passes `faq-index build --golden` with the same model
    and FAQ: the gate then asks a new model to keep what these models could do.
    """
    candidates = [
        GoldenQuery(query=r.query, expected_id=r.faq_id, top_k=top_k, match="topic")
        for r in sorted(rows, key=lambda r: (r.faq_id, _draw_order(r.query), r.query))
    ]
    passed = [True] * len(candidates)
    for encoder in encoders:
        with tempfile.TemporaryDirectory(prefix="faq-golden-") as tmp:
            index = EmbeddedStore(Path(tmp), alias="golden")
            info, _ = index.build(items, encoder, progress=False)
            report = QualityGate(candidates, encoder, top_k).check(index, info.collection)
            index.close()
        passed = [p and r.passed for p, r in zip(passed, report.results, strict=True)]
    golden: list[GoldenQuery] = []
    taken: dict[str, int] = {}
    for g, ok in zip(candidates, passed, strict=True):
        if ok and taken.get(g.expected_id, 0) < per_topic:
            taken[g.expected_id] = taken.get(g.expected_id, 0) + 1
            golden.append(g)
    topics = list(dict.fromkeys(topic_of(i.id) for i in items))
    return Drawn(
        golden=golden,
        tried=len(candidates),
        within=sum(passed),
        topics=len(topics),
        missing=[t for t in topics if t not in taken],
    )
