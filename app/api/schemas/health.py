"""Bodies of the health routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LiveResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    model: str | None = None
    providers: list[str] = Field(default_factory=list)
    index: str | None = None
    index_points: int | None = None
    problem: str | None = None
