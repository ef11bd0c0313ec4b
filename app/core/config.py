"""Every setting of the service, read from `FAQ_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index_builder.answers.query_lang import OTHER_LANGUAGES
from index_builder.store.fusion import Retrieval
from index_builder.store.qdrant import CollectionLayout

# The fusion defaults live with the fusion (index_builder.store.fusion), read here once.
_FUSION = Retrieval()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FAQ_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Model
    model_dir: Path = Field(
        Path("artifacts/onnx/multilingual-e5-small"),
        description="Exported model directory (model.onnx, tokenizer.json, manifest.json).",
    )
    model_variant: Literal["fp32", "int8", "fp16"] = Field(
        "fp32", description="Which exported ONNX file to serve."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA when onnxruntime offers it, else CPU."
    )
    allow_cpu_fallback: bool = Field(
        False, description="Start on CPU when CUDA was asked for but is unavailable."
    )
    intra_op_threads: int | None = Field(
        None,
        ge=1,
        description="ONNX Runtime intra-op threads per worker (default: the runtime's choice, "
        "every core). On 2 cores, 1 thread served short int8 queries at c=32 1.2-1.4x faster "
        "(the event loop keeps a core), but the soak's mix with long queries 0.66x as fast, "
        "and fp32 0.77x (docs/benchmarks.md).",
    )

    # Qdrant
    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("FAQ_QDRANT_URL", "QDRANT_URL", "qdrant_url"),
        description="Qdrant server URL; unset = the embedded store in index_path.",
    )
    qdrant_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("FAQ_QDRANT_API_KEY", "QDRANT_API_KEY", "qdrant_api_key"),
        description="API key of the Qdrant server, when it has one; a warning is logged when "
        "it would travel over plain http to another machine.",
    )
    index_path: Path = Field(
        Path("var/index"),
        validation_alias=AliasChoices("FAQ_INDEX_PATH", "FAQ_QDRANT_PATH"),
        description="Directory of the embedded store, used when no Qdrant URL is set "
        "(FAQ_QDRANT_PATH is read too).",
    )
    qdrant_timeout_s: float = Field(
        2.0,
        gt=0,
        description="Longest wait for one call to the server, in seconds (fractions kept); a "
        "read tried again after a quick fault (refused connection, 5xx) stays within it.",
    )
    collection_alias: str = Field(
        "faq",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Name of the alias; versions are <alias>_v1, <alias>_v2, ...",
    )

    # Search
    max_query_chars: int = Field(
        2000, ge=1, description="Longer queries are cut to this many characters before tokenising."
    )
    min_score: float | None = Field(
        None,
        description="Default min_score of a search: below it the answer is answered=false with "
        "no results. Unset: the live collection's (picked for its FAQ by a reindex, "
        "FAQ_RECALIBRATE), else the model's calibrated value (faq-model calibrate), else none.",
    )
    recalibrate: bool = Field(
        True,
        description="A reindex (admin job or faq-index build) picks the abstain threshold for "
        "the new FAQ: its questions and variants of them against the model's off-topic "
        "anchors (docs/your-faq.md); the service uses the live collection's. Off: the model's "
        "calibrated threshold serves every FAQ.",
    )
    query_languages: list[str] = Field(
        default_factory=lambda: list(OTHER_LANGUAGES),
        description="Languages the query language detector tells apart (ISO 639-1, JSON list); "
        "an answer follows the query's language when its topic has an entry in it.",
    )
    query_lang_low_accuracy: bool = Field(
        True,
        description="Lingua's low-accuracy mode: about 25 MB instead of about 320 MB per "
        "process for 17 languages, 1-1.5 points fewer answers in the query's language.",
    )

    # Access and limits
    search_api_key: SecretStr | None = Field(
        None, description="When set, /search needs it (X-API-Key or Authorization: Bearer)."
    )
    search_api_key_file: Path | None = Field(None, description="File holding the search key.")
    admin_api_key: SecretStr | None = Field(
        None, description="Key for /admin routes; with no key they are disabled, never open."
    )
    admin_api_key_file: Path | None = Field(None, description="File holding the admin key.")
    cors_origins: list[str] = Field(
        default_factory=list, description='Allowed CORS origins, JSON list: ["https://shop"].'
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Larger request bodies are refused with 413."
    )

    # --- admin: reindex, rollback, edits ---
    reindex_sources: dict[str, Path] = Field(
        default_factory=dict,
        description='FAQ files a reindex may name, JSON: {"default": "data/faq.jsonl"}.',
    )
    golden_queries: Path | None = Field(
        None,
        description="JSON list or JSONL of {query, expected_id, top_k?, match?} that a new "
        "collection must pass before the alias moves to it (index_builder.indexing.quality_gate; "
        "`faq-model golden` draws them); unset = no quality gate.",
    )
    golden_top_k: int = Field(5, ge=1, le=100, description="top_k of golden queries without one.")
    keep_collections: int = Field(
        3, ge=1, description="Collections kept behind the alias (the live one included)."
    )
    shard_number: int = Field(
        1, ge=1, description="Against a Qdrant cluster: shards of each new collection."
    )
    replication_factor: int = Field(
        1, ge=1, description="Against a Qdrant cluster: nodes holding each shard."
    )
    write_consistency_factor: int = Field(
        1, ge=1, description="Against a Qdrant cluster: replicas a write waits for."
    )
    jobs_dir: Path = Field(
        Path("var/jobs"), description="Reindex job records and the items submitted inline."
    )

    # --- the inference worker: continuous batching (app/services/batcher.py) ---
    batch_max_size: int = Field(32, ge=1, le=1024, description="Most queries in one batch.")
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Optional extra wait for others to join a batch; 0 = a query runs as soon "
        "as the model is free (continuous batching: batches form by themselves under load).",
    )
    batch_queue_size: int = Field(
        256, ge=1, description="Queries waiting for the encoder; beyond it /search answers 429."
    )
    batch_deadline_s: float = Field(
        2.0, gt=0, description="A query not encoded within this many seconds gets 503."
    )
    answer_weight: float = Field(
        _FUSION.answer_weight,
        ge=0.0,
        le=10.0,
        description="Weight of the FAQ answer's vector in a search, beside the question's "
        "(score = (cos_question + w * cos_answer + lexical) / (1 + w)); 0 searches the "
        "questions only. Collections built before answers were indexed use the questions only.",
    )
    lexical_weight: float = Field(
        _FUSION.lexical_weight,
        ge=0.0,
        le=10.0,
        description="Weight of the lexical (BM25 over the model's subword tokens) score of "
        "question + answer, for exact tokens such as brand or payment names; 0 switches it off.",
    )
    search_batch_max_queries: int = Field(
        32, ge=1, le=1024, description="Most queries in one POST /search/batch."
    )

    # --- the query log (app/services/querylog.py, index_builder/querylog.py) ---
    query_log: str = Field(
        "off",
        pattern=r"^(off|sqlite|sqlite:///.+|postgresql(\+psycopg)?://.+)$",
        description="Log every search (scrubbed text, language, code-mixed, answered, top "
        "answers and scores, latency, request id) for POST /feedback and the training export: "
        "off, sqlite (var/querylog.db) or a database URL, sqlite:///PATH or "
        "postgresql://USER@HOST/DB (the `postgres` extra; the password in PGPASSWORD).",
    )
    query_log_retention_days: int = Field(
        30, ge=1, description="Searches older than this are deleted (at start and hourly)."
    )

    # HTTP
    host: str = Field(
        "127.0.0.1", description="Address to listen on (0.0.0.0 in a container, behind a proxy)."
    )
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    body_read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Longest wait for a request body to arrive in full; a slower client "
        "(slowloris) gets 408 and its connection is closed.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    log_json: bool = Field(True, description="One JSON object per log line (with request_id).")
    access_log_sample: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of successful requests written to the access log (0 = none, "
        "1 = all); 4xx and 5xx answers are always written.",
    )

    # --- workers (faq-serve, app/server.py) ---
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes `faq-serve` starts on one listening socket. With the "
        "embedded store each worker loads the live version itself and notices when it moves.",
    )

    @model_validator(mode="after")
    def _check_layout(self) -> Settings:
        collection_layout(self)  # a write consistency above the replication factor is refused
        return self


def collection_layout(settings: Settings) -> CollectionLayout:
    """The cluster layout of the collections this service builds (one decision, one place)."""
    return CollectionLayout(
        shard_number=settings.shard_number,
        replication_factor=settings.replication_factor,
        write_consistency_factor=settings.write_consistency_factor,
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
