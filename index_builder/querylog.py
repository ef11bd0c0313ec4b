"""The query log's schema and database (FAQ_QUERY_LOG): one definition, SQLite or PostgreSQL.

The service writes it (`app/services/querylog.py`); `faq-model build-data --source querylog`
and the analytics read it. SQLAlchemy Core, so one schema and one code path serve an SQLite
file (WAL: readers never block the writer) and a PostgreSQL server. The columns are described
in docs/api.md ("The query log"): one `faq_searches` row per answered query, one
`faq_feedback` row per click or vote. Times are UTC (SQLite returns them without a zone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    exc,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url

# `FAQ_QUERY_LOG=sqlite`: the embedded default.
DEFAULT_SQLITE = Path("var/querylog.db")

# SQLite gives a row id only to an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ID = BigInteger().with_variant(Integer, "sqlite")
_HITS = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

searches = Table(
    "faq_searches",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("position", SmallInteger, nullable=False),
    Column("query", Text, nullable=False),
    Column("lang", String(16)),
    Column("code_mixed", Boolean, nullable=False),
    Column("answered", Boolean, nullable=False),
    Column("answer_score", Float),
    Column("top_id", String(128)),
    Column("top_topic", String(128)),
    Column("top_score", Float),
    Column("hits", _HITS, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("collection", String(128)),
    Column("model", String(256)),
)

feedback = Table(
    "faq_feedback",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("search_id", ForeignKey(searches.c.id), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("clicked_id", String(128)),
    Column("helpful", Boolean),
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
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_wal)
    try:
        metadata.create_all(engine)
    except exc.DBAPIError:
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
    old = select(searches.c.id).where(searches.c.created_at < cutoff)
    with engine.begin() as conn:
        conn.execute(delete(feedback).where(feedback.c.search_id.in_(old)))
        return conn.execute(delete(searches).where(searches.c.created_at < cutoff)).rowcount
