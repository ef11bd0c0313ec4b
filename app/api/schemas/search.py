"""Request and response bodies of /search and /search/batch.

Requests are strict (no "5" for 5, no 1 for true) and forbid unknown fields, so what the
OpenAPI document says is exactly what the server takes. Responses are built as plain dicts by
the routes; the models below document them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from app.api.schemas.base import RequestModel
from index_builder.answers import LangReason

# A character that `str.strip()` keeps, spelled out: JSON Schema's `\s` (ECMA-262) and
# Python's whitespace differ (\x1c-\x1f, \x85, \ufeff), and the document must refuse exactly
# what the server refuses. `pattern` searches, so NOT_BLANK means "not only whitespace".
NOT_SPACE = r"[^\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
NOT_BLANK = NOT_SPACE


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 30.0; strict pydantic would refuse it. Strings and
    # booleans stay refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral)]


class SearchFilters(RequestModel):
    lang: str | None = Field(None, min_length=2, max_length=16, examples=["es"])
    market: str | None = Field(None, min_length=1, max_length=32, examples=["mx"])

    @field_validator("lang", "market")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


class SearchRequest(RequestModel):
    query: str = Field(
        min_length=1,
        description="The shopper's question, in any language or a mix of them. Long queries "
        "are truncated to the model's limit, not refused. Must contain a character that is "
        "not whitespace.",
        examples=["can I cancel mi pedido"],
        json_schema_extra={"pattern": NOT_BLANK},
    )
    top_k: JsonInt = Field(5, ge=1, le=50)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    group: bool = Field(
        True,
        description="One entry per topic (an answer and its translations are one topic), so "
        "the results are top_k different answers; false: every matching entry, as ranked.",
    )
    lang: str | None = Field(
        None,
        min_length=2,
        max_length=16,
        description="The language to show each answer in where its topic has it; else the "
        "query's detected language, else English, else the best-scoring entry. Unlike "
        "filters.lang it excludes nothing.",
        examples=["es"],
    )
    min_score: float | None = Field(
        None,
        ge=-2.0,
        le=2.0,
        allow_inf_nan=False,
        description="The least answer score (the top score lowered by the query's closeness to "
        "the model's off-topic examples) to answer at all; below it answered is false and "
        "results empty. Default: FAQ_MIN_SCORE, else the model's calibrated value.",
    )

    @field_validator("lang")
    @classmethod
    def _lower_lang(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain text, not only whitespace")
        return value


class SearchResult(BaseModel):
    id: str
    question: str
    answer: str
    score: float = Field(
        description="Similarity to the query: the question's and the answer's cosine and a "
        "lexical (BM25) score, fused (FAQ_ANSWER_WEIGHT, FAQ_LEXICAL_WEIGHT; cosine scale); "
        "with group, the topic's best (in whichever of its languages), which ranks the results."
    )
    lang: str
    market: str | None = None
    tags: list[str] = Field(default_factory=list)
    topic: str = Field(description="The entry's topic: the answer, whatever its language.")
    lang_reason: LangReason = Field(
        description="Why this entry's language: requested (the request's lang), query (the "
        "query's language), english, best (the topic's best-scoring entry), ranked (group "
        "false: no choice made)."
    )


class SearchResponse(BaseModel):
    results: list[SearchResult]
    model: str = Field(description="Model fingerprint: name, variant and weights hash.")
    index: str = Field(description="The collection that answered (the alias target).")
    took_ms: float
    truncated: bool = Field(description="True when the query was cut to the model's limit.")
    answered: bool = Field(
        description="False when the best answer scored below min_score: results are empty "
        "(hand over to a person)."
    )
    answer_score: float | None = Field(description="The score compared with min_score.")
    query_lang: str | None = Field(description="The query's detected language, if decided.")


class BatchSearchRequest(RequestModel):
    queries: list[SearchRequest] = Field(
        min_length=1,
        description="Searches to run together, each like a POST /search body; at most "
        "FAQ_SEARCH_BATCH_MAX_QUERIES (default 32; the document states the served limit).",
    )


class BatchSearchItem(BaseModel):
    results: list[SearchResult]
    truncated: bool = Field(description="True when this query was cut to the model's limit.")
    answered: bool = Field(description="False when the best answer scored below min_score.")
    answer_score: float | None = Field(description="The score compared with min_score.")
    query_lang: str | None = Field(description="The query's detected language, if decided.")


class BatchSearchResponse(BaseModel):
    results: list[BatchSearchItem] = Field(description="One entry per query, in request order.")
    model: str = Field(description="Model fingerprint: name, variant and weights hash.")
    index: str = Field(description="The collection that answered (the alias target).")
    took_ms: float
