"""Request and response bodies of the public API, one module per area."""

from app.api.schemas.admin import (
    CollectionOut,
    FaqEdit,
    FaqEditResult,
    FaqEntry,
    ReindexRequest,
    RollbackRequest,
    RollbackResponse,
)
from app.api.schemas.analytics import AnalyticsResponse
from app.api.schemas.errors import ErrorBody, ErrorDetail, ErrorResponse
from app.api.schemas.feedback import ClickFeedback, FeedbackResult, VoteFeedback
from app.api.schemas.health import LiveResponse, ReadyResponse
from app.api.schemas.openai import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    InfoResponse,
    ModelList,
)
from app.api.schemas.search import (
    BatchSearchItem,
    BatchSearchRequest,
    BatchSearchResponse,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    SearchResult,
)

__all__ = [
    "AnalyticsResponse",
    "BatchSearchItem",
    "BatchSearchRequest",
    "BatchSearchResponse",
    "ClickFeedback",
    "CollectionOut",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "ErrorBody",
    "ErrorDetail",
    "ErrorResponse",
    "FaqEdit",
    "FaqEditResult",
    "FaqEntry",
    "FeedbackResult",
    "InfoResponse",
    "LiveResponse",
    "ModelList",
    "ReadyResponse",
    "ReindexRequest",
    "RollbackRequest",
    "RollbackResponse",
    "SearchFilters",
    "SearchRequest",
    "SearchResponse",
    "SearchResult",
    "VoteFeedback",
]
