"""Request and response bodies of the admin routes.

The FAQ entry a client sends is checked here exactly as the OpenAPI document states it (raw
lengths, "not only whitespace" as a pattern), before `index_builder.faq.FaqItem` strips and
stores it: the document and the server refuse the same bodies.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.api.schemas.base import NOT_BLANK, RequestModel, not_blank

# At least two characters that are not whitespace: what `len(value.strip()) >= 2` accepts.
TWO_NOT_BLANK = rf"{NOT_BLANK}[\s\S]*{NOT_BLANK}"
Text = Annotated[str, not_blank("the text")]


class FaqFields(RequestModel):
    """An FAQ entry's content, as a client sends it."""

    question: Text = Field(min_length=1, max_length=4000, json_schema_extra={"pattern": NOT_BLANK})
    answer: Text = Field(min_length=1, max_length=20000, json_schema_extra={"pattern": NOT_BLANK})
    lang: str = Field(
        min_length=2,
        max_length=16,
        description="ISO 639-1 code, e.g. en, es, id (stored lower-cased, without spaces).",
        examples=["en"],
        json_schema_extra={"pattern": TWO_NOT_BLANK},
    )
    market: str | None = Field(None, max_length=32)
    tags: list[str] = Field(default_factory=list)
    topic: str = Field(
        "",
        max_length=128,
        description="Entries that answer the same question (translations) share a topic; "
        "empty: the id without its language suffix.",
    )

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str) -> str:
        if len(value.strip()) < 2:
            raise ValueError("lang needs at least two characters besides whitespace")
        return value

    def faq_item(self, faq_id: str) -> dict[str, Any]:
        """The fields `FaqItem` validates (and strips)."""
        return {**self.model_dump(exclude={"id"}), "id": faq_id}


class FaqEntry(FaqFields):
    """One entry of a reindex body."""

    id: Annotated[str, not_blank("id")] = Field(
        min_length=1, max_length=128, json_schema_extra={"pattern": NOT_BLANK}
    )


def _reindex_schema(schema: dict[str, Any]) -> None:
    # Exactly one of the two: `{}` and a body with both are invalid in the document too.
    schema["oneOf"] = [{"required": ["items"]}, {"required": ["source"]}]
    for name in ("items", "source"):
        schema["properties"][name].pop("default", None)


class ReindexRequest(RequestModel):
    """Either the FAQ entries themselves or the name of a configured FAQ file."""

    model_config = ConfigDict(json_schema_extra=_reindex_schema)

    # Not `| None`: null is no way to leave a field out here, and the errors of a union would
    # name its branches. Which of the two was given is `model_fields_set`.
    items: list[FaqEntry] = Field(
        default_factory=list,
        min_length=1,
        description="The whole new FAQ: the live content is replaced by it. Ids must be unique.",
    )
    source: str = Field(
        "",
        min_length=1,
        description="A name from FAQ_REINDEX_SOURCES (the document lists the served ones).",
        examples=["default"],
    )

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: list[FaqEntry]) -> list[FaqEntry]:
        dupes = [i for i, n in Counter(item.id for item in items).items() if n > 1]
        if dupes:
            raise ValueError(f"duplicate FAQ ids: {', '.join(sorted(dupes))}")
        return items

    @model_validator(mode="after")
    def _one_of(self) -> ReindexRequest:
        given = self.model_fields_set & {"items", "source"}
        if len(given) != 1:
            raise ValueError('give either "items" or "source", not both or neither')
        return self

    @property
    def named_source(self) -> str | None:
        return self.source if "source" in self.model_fields_set else None


class RollbackRequest(RequestModel):
    collection: str | None = Field(
        None,
        description="A kept collection to move the alias to; default: the one before the live.",
        examples=["faq_v3"],
    )


class RollbackResponse(BaseModel):
    previous: str = Field(description="The alias target before the rollback.")
    current: str = Field(description="The alias target now.")


class CollectionOut(BaseModel):
    name: str
    version: int
    points: int
    state: str = Field(description="ready, or building (a build in progress or killed).")
    fingerprint: str
    content_hash: str = Field(description="Empty for a version an edit (PUT/DELETE) wrote.")
    created_at: str
    live: bool


class FaqEdit(FaqFields):
    """One entry for PUT /admin/faq/{faq_id}."""

    id: str | None = Field(None, description="Ignored: the id in the path wins.")


class FaqEditResult(BaseModel):
    id: str
    collection: str = Field(
        description="The version the edit wrote, live now; a rollback returns to the one before."
    )
    created: bool = False
    deleted: bool = False
