"""Request and response bodies of /search and /search/batch (the routes build the responses as
plain dicts; these models document them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from app.api.schemas.base import NOT_BLANK, JsonInt, RequestModel, not_blank
from index_builder.answers.grouping import LangReason


def _lower(value: str | None) -> str | None:
    return value.strip().lower() if value else value


class SearchFilters(RequestModel):
    lang: str | None = Field(None, min_length=2, max_length=16, examples=["es"])
    market: str | None = Field(None, min_length=1, max_length=32, examples=["mx"])

    _lowered = field_validator("lang", "market")(_lower)


class SearchRequest(RequestModel):
    query: Annotated[str, not_blank("query")] = Field(
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

    _lowered = field_validator("lang")(_lower)


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
