"""POST /feedback: a shopper's click on an answer, or their vote on the answers of a search."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.api.schemas.base import JsonInt, RequestModel

_REQUEST_ID = Field(
    pattern=r"^[A-Za-z0-9._:-]{1,128}$",
    description="The X-Request-ID of the search's response.",
)
_POSITION = Field(
    0, ge=0, le=1023, description="Which query of a /search/batch request (0-based); 0 for /search."
)


class ClickFeedback(RequestModel):
    """The shopper opened an answer (or, after an abstention, found one themselves)."""

    request_id: str = _REQUEST_ID
    position: JsonInt = _POSITION
    clicked_id: str = Field(min_length=1, max_length=128, description="The FAQ entry's id.")


class VoteFeedback(RequestModel):
    """The shopper said whether the answers helped."""

    request_id: str = _REQUEST_ID
    position: JsonInt = _POSITION
    helpful: bool


class FeedbackResult(BaseModel):
    request_id: str
    position: int
    clicked_id: str | None = None
    helpful: bool | None = None
