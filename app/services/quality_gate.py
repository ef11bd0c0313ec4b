"""The reindex quality gate: golden queries that a new collection must answer before it serves.

Each golden query names the FAQ id it must find within its top k. The gate runs against the new
collection by name, after every entry is stored and before the alias moves (`FaqIndex.build`'s
`validate` hook), so a failing collection never serves a single request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from index_builder.encoder import Encoder
from index_builder.store import FaqIndex, IndexBuildError


class GoldenQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    query: str = Field(min_length=1)
    expected_id: str = Field(min_length=1)
    top_k: int | None = Field(None, ge=1, le=100)


class GoldenResult(BaseModel):
    query: str
    expected_id: str
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
    """The golden queries file cannot be used; the message names the file and the entry."""


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
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise GoldenFileError(f"{path} {where} {n}: {problems}") from None
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

    def check(self, index: FaqIndex, collection: str) -> GateReport:
        vectors = self.encoder.encode_queries([g.query for g in self.golden])
        results = []
        for g, vector in zip(self.golden, vectors, strict=True):
            top_k = g.top_k or self.default_top_k
            ids = [h.id for h in index.search(vector, top_k, collection=collection)]
            rank = ids.index(g.expected_id) + 1 if g.expected_id in ids else None
            results.append(
                GoldenResult(
                    query=g.query,
                    expected_id=g.expected_id,
                    top_k=top_k,
                    rank=rank,
                    passed=rank is not None,
                    top_ids=ids,
                )
            )
        failed = sum(not r.passed for r in results)
        return GateReport(passed=failed == 0, total=len(results), failed=failed, results=results)
