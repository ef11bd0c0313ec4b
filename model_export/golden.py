"""Golden queries drawn from labelled queries (a dev split): `faq-model golden`.

What is drawn is the quality gate's file (`index_builder.indexing.quality_gate`): per topic,
queries that the model answers with the topic (`"match": "topic"`) within top k, checked by the
gate itself, so a drawn file passes `faq-index build --golden` with the same model and FAQ.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from index_builder.faq import FaqItem, topic_of
from index_builder.indexing.quality_gate import GoldenFileError, GoldenQuery, QualityGate, _describe
from index_builder.model.encoder import Encoder
from index_builder.store import EmbeddedStore


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
