"""FAQ files: JSONL or CSV rows validated into `FaqItem`s, with errors that name file and line."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from index_builder.jsonl import json_objects

FIELDS = ("id", "question", "answer", "lang", "market", "tags", "topic")


class FaqFileError(ValueError):
    """A FAQ file that cannot be used as it is; `str()` reads `path:line: what is wrong`."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class FaqItem(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=128)
    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(min_length=1, max_length=20000)
    lang: str = Field(min_length=2, max_length=16, description="ISO 639-1 code, e.g. en, es, id")
    market: str | None = Field(default=None, max_length=32)
    tags: list[str] = Field(default_factory=list)
    topic: str = Field(
        default="",
        max_length=128,
        description="Entries that answer the same question (translations) share a topic; "
        "default: the id without its language suffix (`topic_of`).",
    )

    @field_validator("lang", "market")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @model_validator(mode="after")
    def _default_topic(self) -> FaqItem:
        if not self.topic:
            self.topic = topic_of(self.id)
        return self

    @property
    def lexical_text(self) -> str:
        """What the lexical (BM25) vector is made of: the question and its answer."""
        return f"{self.question}\n{self.answer}"

    def payload(self) -> dict[str, Any]:
        return self.model_dump()

    def identity_json(self) -> str:
        """The entry as JSON for hashing; a default topic is left out, so files written before
        the topic field hash as they did (their indexes are not rebuilt for nothing)."""
        exclude = {"topic"} if self.topic == topic_of(self.id) else None
        return self.model_dump_json(exclude=exclude)


def describe_errors(exc: ValidationError, whole: str = "row") -> str:
    """`field: what is wrong` per error; `whole` names an error of the whole row."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or whole}: {e['msg']}" for e in exc.errors()
    )


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [f for f in ("id", "question", "answer", "lang") if f not in header]
    if missing:
        raise FaqFileError(path, 1, f"CSV header lacks column(s): {', '.join(missing)}")
    unknown = [f for f in header if f not in FIELDS]
    if unknown:
        raise FaqFileError(path, 1, f"unknown CSV column(s): {', '.join(unknown)}")
    for row in reader:
        if None in row:
            raise FaqFileError(path, reader.line_num, "more fields than the header names")
        out: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
        if "tags" in out:
            out["tags"] = [t.strip() for t in str(out["tags"]).split("|") if t.strip()]
        yield reader.line_num, out


def parse_items(rows: Iterable[tuple[int, dict[str, Any]]], path: Path | str) -> list[FaqItem]:
    """Validate rows; duplicate ids are refused because the id is the point identity."""
    items: list[FaqItem] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        try:
            item = FaqItem.model_validate(row)
        except ValidationError as exc:
            raise FaqFileError(path, lineno, describe_errors(exc)) from None
        if item.id in seen:
            raise FaqFileError(
                path, lineno, f"duplicate id {item.id!r} (first on line {seen[item.id]})"
            )
        seen[item.id] = lineno
        items.append(item)
    return items


def topic_of(entry_id: str) -> str:
    """An entry's id without its language suffix (`order-cancel.es`): translations share it.
    The default of `FaqItem.topic` and of a search hit whose payload has no topic."""
    return entry_id.split(".", 1)[0]


def read_faq(path: Path) -> list[FaqItem]:
    """Read a `.jsonl` / `.ndjson` or `.csv` FAQ file; raise `FaqFileError` on the first bad row."""
    if not path.is_file():
        raise FaqFileError(path, None, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FaqFileError(path, None, f"not UTF-8 text ({exc.reason})") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = json_objects(text, lambda lineno, msg: FaqFileError(path, lineno, msg))
    elif suffix == ".csv":
        rows = _csv_rows(path, text)
    else:
        raise FaqFileError(path, None, "unknown format: use .jsonl or .csv")
    items = parse_items(rows, path)
    if not items:
        raise FaqFileError(path, None, "no FAQ entries")
    return items


def content_hash(items: Iterable[FaqItem]) -> str:
    """Order-independent hash of the entries, so an unchanged FAQ file is not reindexed."""
    digests = sorted(hashlib.sha256(i.identity_json().encode()).hexdigest() for i in items)
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
