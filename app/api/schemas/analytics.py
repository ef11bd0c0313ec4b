"""GET /admin/analytics: what shoppers asked in a window of days, and what the FAQ lacks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AbstainRate(BaseModel):
    searches: int
    abstained: int
    rate: float = Field(description="abstained / searches.")


class TopicStat(BaseModel):
    topic: str
    shown: int = Field(description="Answered searches with this topic as the first answer.")
    clicks: int = Field(description="Clicks (POST /feedback) on any entry of the topic.")


class FaqGap(BaseModel):
    """Abstained and low-score queries that read alike: a question the FAQ does not answer."""

    size: int = Field(description="Searches in the cluster (a repeated query counts each time).")
    languages: dict[str, int] = Field(description="Searches per detected language (`und`: none).")
    examples: list[str] = Field(description="Up to three of its queries, nearest its centre first.")
    nearest_topic: str | None = Field(
        description="The topic of the FAQ entry nearest the cluster's centre (null: empty index)."
    )
    nearest_score: float | None = Field(description="That entry's search score.")


class AnalyticsResponse(BaseModel):
    """The query log's searches of the last `days` days (GET /admin/analytics)."""

    days: int
    since: datetime = Field(description="Start of the window (UTC).")
    searches: int
    abstained: int
    clicks: int = Field(description="Clicks logged on the window's searches (0: none sent).")
    by_language: dict[str, AbstainRate] = Field(description="Per detected language (`und`: none).")
    by_kind: dict[str, AbstainRate] = Field(description="`code_mixed` and `monolingual`.")
    top_topics: list[TopicStat] = Field(description="The 10 topics shown most.")
    never_clicked: list[TopicStat] = Field(
        description="Topics shown and never clicked in the window, most shown first (up to 10)."
    )
    low_score_below: float | None = Field(
        description="Answered searches below this answer score join the gaps (the served "
        "abstain threshold + 0.05); null when the service has no threshold."
    )
    distance: float = Field(description="The cosine distance the gaps were cut at.")
    gap_queries: int = Field(
        description="Abstained and low-score searches clustered (the 2,000 most recent)."
    )
    gaps: list[FaqGap] = Field(description="Clusters of 2 searches or more, largest first (20).")
