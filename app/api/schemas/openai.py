"""OpenAI-compatible bodies (POST /v1/embeddings, GET /v1/models) and GET /info.

Shaped like OpenAI's embeddings API so its clients work against the served encoder; the one
addition is `input_type`, which picks the e5 prefix (`query: ` or `passage: `).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.api.schemas.base import RequestModel

Text = Annotated[str, Field(min_length=1)]


class EmbeddingsRequest(RequestModel):
    input: Text | Annotated[list[Text], Field(min_length=1)] = Field(
        description="One text or a list of texts (at most FAQ_SEARCH_BATCH_MAX_QUERIES, as for "
        "POST /search/batch; the document states the served limit). Texts longer than "
        "FAQ_MAX_QUERY_CHARS characters are cut, and every text to the model's token limit, "
        "as for /search.",
        examples=["can I cancel mi pedido"],
    )
    model: str = Field(
        min_length=1,
        description="The served model: its name (GET /v1/models) or its fingerprint; any "
        "other is 404.",
        examples=["multilingual-e5-small"],
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: the little-endian float32 bytes of each vector."
    )
    input_type: Literal["query", "passage"] = Field(
        "query",
        description="Which e5 prefix the texts get: `query: ` for questions and for symmetric "
        "tasks (similarity, clustering), `passage: ` for the documents a query should find.",
    )
    user: str | None = Field(None, description="Accepted and ignored, as a courtesy to clients.")


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(
        description="The unit-length vector, or its float32 bytes base64-encoded."
    )


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model ran on, prefix and specials included.")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int = Field(description="Unix time of the export (0 when unknown).")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class ModelInfo(BaseModel):
    name: str
    fingerprint: str = Field(description="Identity of the vectors: weights, tokenizer, prefixes.")
    variant: str = Field(description="The exported ONNX variant served: fp32, int8 or fp16.")
    providers: list[str] = Field(description="ONNX Runtime providers the session runs on.")
    dim: int
    max_length: int = Field(description="Tokens per input, special tokens included.")


class IndexInfo(BaseModel):
    alias: str
    collection: str | None = Field(description="The collection the alias points to.")
    points: int | None = None
    problem: str | None = Field(None, description="Why the index cannot serve, when it cannot.")


class AbstainInfo(BaseModel):
    min_score: float | None = Field(
        description="The min_score of a search whose request sets none (null: always answer)."
    )
    source: Literal["FAQ_MIN_SCORE", "collection", "model", "none"] = Field(
        description="Where it comes from: the setting; the live collection's, picked for its "
        "FAQ at reindex; the served variant's calibration (faq-model calibrate); none."
    )
    collection: str | None = Field(None, description="The collection, for source collection.")


class InfoResponse(BaseModel):
    model: ModelInfo
    index: IndexInfo
    abstain: AbstainInfo
    version: str = Field(description="The service's version.")
