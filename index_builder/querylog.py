"""The query log's schema and database (FAQ_QUERY_LOG): one definition, SQLite or PostgreSQL.

The service writes it (`app/services/querylog.py`); the training export and the analytics read
it. Columns: docs/api.md ("The query log"). Times are UTC (SQLite returns them without a zone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url

# `FAQ_QUERY_LOG=sqlite`: the embedded default.
DEFAULT_SQLITE = Path("var/querylog.db")

# SQLite gives a row id only to an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_HITS = sa.JSON().with_variant(JSONB(), "postgresql")

metadata = sa.MetaData()

searches = sa.Table(
    "faq_searches",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("request_id", sa.String(128), nullable=False, index=True),
    sa.Column("position", sa.SmallInteger, nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("lang", sa.String(16)),
    sa.Column("code_mixed", sa.Boolean, nullable=False),
    sa.Column("answered", sa.Boolean, nullable=False),
    sa.Column("answer_score", sa.Float),
    sa.Column("top_id", sa.String(128)),
    sa.Column("top_topic", sa.String(128)),
    sa.Column("top_score", sa.Float),
    sa.Column("hits", _HITS, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("collection", sa.String(128)),
    sa.Column("model", sa.String(256)),
)

feedback = sa.Table(
    "faq_feedback",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("search_id", sa.ForeignKey(searches.c.id), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("clicked_id", sa.String(128)),
    sa.Column("helpful", sa.Boolean),
)


def database_url(setting: str) -> str | None:
    """The database URL FAQ_QUERY_LOG names: None for `off`, the default file for `sqlite`."""
    if setting == "off":
        return None
    if setting == "sqlite":
        return f"sqlite:///{DEFAULT_SQLITE}"
    return setting


def connect(url: str) -> Engine:
    """An engine on `url` with the tables created; `postgresql://` uses psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Another worker process or the feedback route may hold the write lock a moment.
        kwargs = {"connect_args": {"timeout": 30}}
    engine = sa.create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_wal)
    try:
        metadata.create_all(engine)
    except sa.exc.DBAPIError:
        # Several workers start at once: another one created the tables between the check
        # and the CREATE; the second pass finds them.
        metadata.create_all(engine)
    return engine


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits, which
    # a query log can spare, and each commit is no longer an fsync.
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def purge(engine: Engine, retention_days: int, now: datetime | None = None) -> int:
    """Deletes the searches older than `retention_days` and their feedback; how many searches."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    old = sa.select(searches.c.id).where(searches.c.created_at < cutoff)
    with engine.begin() as conn:
        conn.execute(sa.delete(feedback).where(feedback.c.search_id.in_(old)))
        return conn.execute(sa.delete(searches).where(searches.c.created_at < cutoff)).rowcount
