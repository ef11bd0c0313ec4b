"""The query log read back (GET /admin/analytics): abstain rates, topics shown and clicked, and
the FAQ's gaps, the abstained and low-score queries clustered with the served encoder.

`read_log` is blocking SQL (call it from a thread); `find_gaps` clusters vectors the route
encoded on the inference worker. SQLAlchemy and scikit-learn are imported inside them: the
service loads neither unless the log is on and the report is asked for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index_builder.faq import topic_of

# An answer this close above the abstain threshold was a guess: its query joins the gaps.
LOW_SCORE_MARGIN = 0.05
# Clustering is quadratic in the queries: only the newest are kept.
MAX_GAP_QUERIES = 2000
# Average-linkage cosine distance at which clusters stop merging: wide enough to join one
# missing topic asked in several languages, narrow enough to keep it apart from noise
# (tests/app/test_analytics.py). A model that spreads queries wider wants a larger one.
DEFAULT_DISTANCE = 0.16

MAX_GAPS = 20
TOP_TOPICS = 10


@dataclass(frozen=True)
class LogReport:
    since: datetime
    summary: dict[str, Any]
    # The abstained and low-score searches, newest first: (query, detected language).
    weak: list[tuple[str, str | None]]


def _rate(searches: int, abstained: int) -> dict[str, Any]:
    return {"searches": searches, "abstained": abstained, "rate": round(abstained / searches, 4)}


def read_log(engine: Any, days: int, low_score_below: float | None) -> LogReport:
    """The window's counts and its weak searches; ConnectionError when the database is down."""
    from sqlalchemy import ColumnElement, exc, func, or_, select

    from index_builder.querylog import feedback, searches

    s = searches.c
    since = datetime.now(UTC) - timedelta(days=days)
    recent = s.created_at >= since
    counts = select(s.lang, s.code_mixed, s.answered, func.count()).where(recent)
    shown = select(s.top_topic, s.top_id, func.count()).where(recent, s.answered)
    clicks = (
        select(feedback.c.clicked_id, func.count())
        .join(searches, feedback.c.search_id == s.id)
        .where(recent, feedback.c.clicked_id.is_not(None))
    )
    weak: ColumnElement[bool] = s.answered.is_(False)
    if low_score_below is not None:
        weak = or_(weak, s.answer_score < low_score_below)
    weak_rows = select(s.query, s.lang).where(recent, weak).order_by(s.id.desc())
    try:
        with engine.connect() as conn:
            groups = conn.execute(counts.group_by(s.lang, s.code_mixed, s.answered)).all()
            shown_rows = conn.execute(shown.group_by(s.top_topic, s.top_id)).all()
            click_rows = conn.execute(clicks.group_by(feedback.c.clicked_id)).all()
            weak_list = [(q, lang) for q, lang in conn.execute(weak_rows.limit(MAX_GAP_QUERIES))]
    except exc.OperationalError as error:
        message = f"the query log's database cannot be reached: {error.orig}"
        raise ConnectionError(message) from error

    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for lang, mixed, answered, n in groups:
        for key in ("all", f"lang:{lang or 'und'}", "code_mixed" if mixed else "monolingual"):
            totals[key]["searches"] += n
            totals[key]["abstained"] += 0 if answered else n

    def rates(keys: list[str]) -> dict[str, Any]:
        return {k.removeprefix("lang:"): _rate(**totals[k]) for k in keys}

    # Topics by the first answer shown; a click counts for its entry's topic.
    entry_topic: dict[str, str] = {}
    shown_by: Counter[str] = Counter()
    for topic, top_id, n in shown_rows:
        entry_topic[top_id] = topic = topic or topic_of(top_id)
        shown_by[topic] += n
    clicked: Counter[str] = Counter()
    for clicked_id, n in click_rows:
        clicked[entry_topic.get(clicked_id) or topic_of(clicked_id)] += n
    topics = [{"topic": t, "shown": n, "clicks": clicked[t]} for t, n in shown_by.most_common()]
    langs = [k for k in totals if k.startswith("lang:")]
    langs.sort(key=lambda k: -totals[k]["searches"])
    summary = {
        "searches": totals["all"]["searches"],
        "abstained": totals["all"]["abstained"],
        "clicks": clicked.total(),
        "by_language": rates(langs),
        "by_kind": rates([k for k in ("code_mixed", "monolingual") if k in totals]),
        "top_topics": topics[:TOP_TOPICS],
        "never_clicked": [t for t in topics if not t["clicks"]][:TOP_TOPICS],
    }
    return LogReport(since, summary, weak_list)


def cluster(vectors: NDArray[np.float32], distance: float) -> NDArray[np.intp]:
    """A cluster label per row: average linkage on cosine distance, cut at `distance`."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.intp)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average"
    )
    return np.asarray(model.fit_predict(vectors), dtype=np.intp)


def find_gaps(
    weak: list[tuple[str, str | None]],
    texts: list[str],
    vectors: NDArray[np.float32],
    distance: float,
) -> list[tuple[dict[str, Any], NDArray[np.float32]]]:
    """The largest clusters of 2 searches or more, each with its centre (a unit vector).

    `texts` are the distinct queries of `weak`, `vectors` their unit vectors: a query asked
    again is encoded once and counted each time."""
    labels = cluster(vectors, distance)
    label_of = dict(zip(texts, labels, strict=True))
    sizes: Counter[int] = Counter()
    languages: dict[int, Counter[str]] = defaultdict(Counter)
    for query, lang in weak:
        sizes[label_of[query]] += 1
        languages[label_of[query]][lang or "und"] += 1
    gaps: list[tuple[dict[str, Any], NDArray[np.float32]]] = []
    for label, size in sizes.most_common():
        if size < 2 or len(gaps) == MAX_GAPS:
            break
        rows = np.flatnonzero(labels == label)
        centre = vectors[rows].mean(axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        nearest = rows[np.argsort(-(vectors[rows] @ centre), kind="stable")[:3]]
        gap = {
            "size": size,
            "languages": dict(languages[label].most_common()),
            "examples": [texts[i] for i in nearest],
        }
        gaps.append((gap, centre.astype(np.float32)))
    return gaps
