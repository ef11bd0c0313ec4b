"""Request and response bodies of the public API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lang: str | None = Field(None, min_length=2, max_length=16, examples=["es"])
    market: str | None = Field(None, min_length=1, max_length=32, examples=["mx"])

    @field_validator("lang", "market")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        min_length=1,
        description="The shopper's question, in any language or a mix of them. Long queries "
        "are truncated to the model's limit, not refused.",
        examples=["can I cancel mi pedido"],
    )
    top_k: int = Field(5, ge=1, le=50)
    filters: SearchFilters = Field(default_factory=SearchFilters)

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
    score: float
    lang: str
    market: str | None = None
    tags: list[str] = Field(default_factory=list)


class SearchResponse(BaseModel):
    results: list[SearchResult]
    model: str = Field(description="Model fingerprint: name, variant and weights hash.")
    index: str = Field(description="The collection that answered (the alias target).")
    took_ms: float
    truncated: bool = Field(description="True when the query was cut to the model's limit.")


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: list[SearchRequest] = Field(
        min_length=1,
        description="Searches to run together, each like a POST /search body; at most "
        "FAQ_SEARCH_BATCH_MAX_QUERIES (default 32).",
    )


class BatchSearchItem(BaseModel):
    results: list[SearchResult]
    truncated: bool = Field(description="True when this query was cut to the model's limit.")


class BatchSearchResponse(BaseModel):
    results: list[BatchSearchItem] = Field(description="One entry per query, in request order.")
    model: str = Field(description="Model fingerprint: name, variant and weights hash.")
    index: str = Field(description="The collection that answered (the alias target).")
    took_ms: float


class ReadyResponse(BaseModel):
    ready: bool
    model: str | None = None
    providers: list[str] = Field(default_factory=list)
    index: str | None = None
    index_points: int | None = None
    problem: str | None = None
