"""The quality gate: golden queries that a new collection must answer before it serves.

Each golden query names the FAQ entry it must find within its top k, checked on the new
collection before the alias moves (`Store.build(validate=...)`), by `faq-index build --golden`
and the service's reindex alike. `match`: `"id"` (default) wants that entry; `"topic"` it or any
of its translations (`index_builder.faq.topic_of`), as for queries labelled by topic
(`faq-model golden`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from index_builder.faq import describe_errors, topic_of
from index_builder.model.encoder import Encoder
from index_builder.store import IndexBuildError, SearchSpec, Store
from index_builder.store.lexical import Lexicon

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
    return describe_errors(exc, whole="entry")


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
        rows = list(enumerate(data, start=1))
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


@dataclass(frozen=True)
class QualityGate:
    golden: Sequence[GoldenQuery]
    encoder: Encoder
    default_top_k: int = 5

    def check(self, index: Store, collection: str) -> GateReport:
        texts = [g.query for g in self.golden]
        vectors = self.encoder.encode_queries(texts)
        # Searched as the service searches: with the lexical part's tokens.
        lexical = Lexicon.for_encoder(self.encoder).queries(texts)
        top_ks = [g.top_k or self.default_top_k for g in self.golden]
        specs = [SearchSpec(k, lexical=tokens) for k, tokens in zip(top_ks, lexical, strict=True)]
        found = index.search_many(vectors, specs, collection)
        results = []
        for g, top_k, hits in zip(self.golden, top_ks, found, strict=True):
            ids = [h.id for h in hits]
            rank = g.rank_in(ids)
            asked = g.model_dump(exclude={"top_k"})  # the query, its expected id and match
            results.append(
                GoldenResult(**asked, top_k=top_k, rank=rank, passed=rank is not None, top_ids=ids)
            )
        failed = sum(not r.passed for r in results)
        return GateReport(passed=failed == 0, total=len(results), failed=failed, results=results)
