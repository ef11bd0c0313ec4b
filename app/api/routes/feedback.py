"""POST /feedback: ties a click or a vote to its logged search (FAQ_QUERY_LOG)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request

from app.api.deps import SearchAuth
from app.api.errors import ApiError
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.feedback import ClickFeedback, FeedbackResult, VoteFeedback

router = APIRouter(tags=["feedback"])


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackResult,
    responses=errors(
        401,
        413,
        422,
        s404="No logged search has this request id (and position): not logged yet by another "
        "worker, past the retention, or dropped while the log was full.",
        s409="The query log is off (FAQ_QUERY_LOG): there is no search to tie feedback to.",
        s503="The query log's database cannot be reached: retry after Retry-After seconds.",
    ),
)
def post_feedback(
    body: Annotated[ClickFeedback | VoteFeedback, Body()], request: Request, _auth: SearchAuth
) -> OrjsonResponse:
    """Exactly one of `clicked_id` (the answer the shopper opened) and `helpful` (their vote)."""
    query_log = request.app.state.query_log
    if query_log is None:
        raise ApiError(
            409, "the query log is off: set FAQ_QUERY_LOG to record searches and their feedback"
        )
    clicked = body.clicked_id if isinstance(body, ClickFeedback) else None
    helpful = body.helpful if isinstance(body, VoteFeedback) else None
    try:
        found = query_log.add_feedback(body.request_id, body.position, clicked, helpful)
    except ConnectionError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    if not found:
        raise ApiError(
            404,
            f"no logged search with request id {body.request_id!r} at position {body.position}",
        )
    result = {"request_id": body.request_id, "position": body.position}
    return OrjsonResponse({**result, "clicked_id": clicked, "helpful": helpful}, status_code=201)
