"""The one error shape of every failure: `{"error": {"type", "message", "details"?}}`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    field: str = Field(description="Dotted path of the field at fault, or `body`.")
    message: str


class ErrorBody(BaseModel):
    type: str = Field(
        description="Machine-readable kind: bad_request, unauthorized, forbidden, not_found, "
        "method_not_allowed, conflict, payload_too_large, validation_error, "
        "too_many_requests, service_unavailable, internal_error.",
        examples=["validation_error"],
    )
    message: str = Field(description="What went wrong and what to do about it.")
    details: list[ErrorDetail] | None = Field(
        None, description="Per field, on validation errors only."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody
