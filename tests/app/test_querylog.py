"""The query log (FAQ_QUERY_LOG): the scrubber, the storage on SQLite and on a real PostgreSQL
server (the same tests), and over HTTP: POST /feedback, and searches that never wait on it."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from glob import glob
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from app.core.config import Settings
from app.metrics import Metrics
from app.services import querylog
from app.services.answering import Shaped
from app.services.querylog import QueryLog, scrub
from index_builder.answers.query_lang import OTHER_LANGUAGES, QueryLanguageDetector
from index_builder.querylog import connect, feedback, searches
from index_builder.store import Hit
from tests.app.conftest import fake_app, serve

# --- the scrubber ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("my email is jane.doe+shop@example.co.uk pls", "my email is <email> pls"),
        ("call me at +49 30 1234567 today", "call me at <phone> today"),
        ("hp saya 0812-3456-7890", "hp saya <phone>"),
        ("(030) 123 4567 is my number", "<phone> is my number"),
        ("card 4111 1111 1111 1111 declined", "card <card> declined"),
        ("kartu 4111-1111-1111-1111 ditolak", "kartu <card> ditolak"),
        ("order #10234 not arrived", "order <order> not arrived"),
        ("pedido 123456789 no llega", "pedido <order> no llega"),
        ("where is ORD-2024-55812", "where is <order>"),
        ("tracking 1Z999AA10123456784", "tracking <order>"),
        ("注文番号12345678が届かない", "注文番号<order>が届かない"),
    ],
)
def test_the_scrubber_hides_each_kind_of_number_and_address(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "iphone 15 pro 256gb",
        "size 42 shoes, 2 pairs",
        "refund in 14 days?",
        "delivered 2024-05-12 but broken",
        "can I cancel mi pedido",
    ],
)
def test_the_scrubber_keeps_what_is_no_personal_number(text: str) -> None:
    assert scrub(text) == text


# --- storage: SQLite and PostgreSQL, the same tests -----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_ctl() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return found
    versions = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return versions[-1] if versions else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL server started by pytest-postgresql's executor (Debian's `postgresql`,
    which `make test` installs): skipped only where no server binary is installed."""
    pg_ctl = _pg_ctl()
    if pg_ctl is None:
        pytest.skip("no PostgreSQL server (pg_ctl): make test installs Debian's postgresql")
    from pytest_postgresql.executors import PostgreSQLExecutor

    base = Path(tempfile.mkdtemp(prefix="faq-pg-"))
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root (CI runs as root): its own user runs pg_ctl, in a
        # directory it owns.
        shutil.chown(base, "postgres")
        wrapper = base / "pg_ctl"
        wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- {pg_ctl} "$@"\n')
        wrapper.chmod(0o755)
        pg_ctl = str(wrapper)
    executor = PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=_free_port(),
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "postgresql.log"),
        startparams="-w",
        dbname="querylog",
    )
    try:
        with executor:
            executor.wait_for_postgres()
            yield executor
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'querylog.db'}"
        return
    from pytest_postgresql.janitor import DatabaseJanitor

    server = request.getfixturevalue("postgres")
    name = f"qlog_{os.getpid()}_{time.monotonic_ns()}"
    with DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname=name):
        yield f"postgresql://{server.user}@{server.host}:{server.port}/{name}"


@pytest.fixture(scope="module")
def detector() -> QueryLanguageDetector:
    return QueryLanguageDetector(OTHER_LANGUAGES, other_languages=(), low_accuracy=True)


def _shaped(*ids: str, answered: bool = True, query_lang: str | None = None) -> Shaped:
    hits = [
        Hit(i, "q", "a", "es", None, [], 0.9 - 0.1 * k, topic=i.split(".")[0])
        for k, i in enumerate(ids)
    ]
    topics = [h.topic for h in hits]
    scores = [h.score for h in hits]
    return Shaped(hits, ["query"] * len(hits), topics, scores, answered, 0.5, query_lang)


def _log(
    url: str,
    detector: QueryLanguageDetector | None = None,
    metrics: Metrics | None = None,
    **kw: Any,
) -> QueryLog:
    values: dict[str, Any] = {"max_query_chars": 60, "queue_size": 100, **kw}
    dropped = (metrics or Metrics()).querylog_dropped
    return QueryLog(url, 30, detector=detector, dropped=dropped, **values)


def _rows(url: str, table: Any = searches) -> list[dict[str, Any]]:
    engine = connect(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]
    finally:
        engine.dispose()


def _utc(value: datetime) -> datetime:
    # SQLite keeps no zone: the writer stores UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_each_query_is_written_with_what_analytics_reads(
    db_url: str, detector: QueryLanguageDetector
) -> None:
    query_log = _log(db_url, detector)
    mixed = "quiero cancelar mi order, mi correo es ana@mail.com"
    spanish = "dónde está mi pedido, mi correo es ana@mail.com"
    long_text = "wo ist mein Paket " * 10
    query_log.record(
        "req-1",
        [mixed, "asdf qwer", long_text, spanish],
        [
            _shaped("order-cancel.es", "order-modify.es"),
            _shaped(answered=False),
            _shaped("x"),
            _shaped("y"),
        ],
        12.5,
        "faq_v3",
        "e5:int8:abc",
    )
    assert query_log.flush()
    query_log.close()
    first, abstained, cut, monolingual = _rows(db_url)
    assert first["request_id"] == "req-1" and first["position"] == 0
    assert first["query"] == "quiero cancelar mi order, mi correo es <email>"
    assert (first["lang"], first["code_mixed"], first["answered"]) == ("es", True, True)
    assert (first["top_id"], first["top_topic"]) == ("order-cancel.es", "order-cancel")
    assert first["top_score"] == pytest.approx(0.9) and first["answer_score"] == 0.5
    assert first["hits"] == [
        {"id": "order-cancel.es", "topic": "order-cancel", "score": 0.9},
        {"id": "order-modify.es", "topic": "order-modify", "score": 0.8},
    ]
    assert (first["latency_ms"], first["collection"], first["model"]) == (
        12.5,
        "faq_v3",
        "e5:int8:abc",
    )
    assert abs(_utc(first["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert (abstained["answered"], abstained["top_id"], abstained["hits"]) == (False, None, [])
    assert abstained["position"] == 1
    assert cut["query"] == long_text[:60] and cut["lang"] == "de"
    # The e-mail address's words do not make a Spanish query code-mixed.
    assert (monolingual["lang"], monolingual["code_mixed"]) == ("es", False)


def test_the_searchs_language_is_not_read_again_unless_the_scrubber_changed_the_text(
    tmp_path: Path, detector: QueryLanguageDetector
) -> None:
    # The search read these texts as "fr" (a stand-in: the writer must take it, not detect
    # again); the second one lost an e-mail address to the scrubber, so it is read anew.
    query_log = _log(f"sqlite:///{tmp_path / 'log.db'}", detector)
    german = "wo ist mein Paket"
    query_log.record(
        "req-1",
        [german, german + " ana@mail.com"],
        [_shaped("x", query_lang="fr"), _shaped("y", query_lang="fr")],
        1.0,
        "faq_v1",
        "m",
    )
    assert query_log.flush()
    query_log.close()
    kept, read_again = _rows(f"sqlite:///{tmp_path / 'log.db'}")
    assert (kept["lang"], read_again["lang"]) == ("fr", "de")


def test_feedback_joins_the_latest_search_of_its_request_and_position(db_url: str) -> None:
    query_log = _log(db_url)
    query_log.record("req-1", ["first"], [_shaped("a")], 1.0, "faq_v1", "m")
    query_log.record("req-1", ["again", "second"], [_shaped("b"), _shaped("c")], 1.0, "faq_v1", "m")
    # Not flushed here: the feedback waits for the searches queued before it.
    assert query_log.add_feedback("req-1", 0, "b", None)
    assert query_log.add_feedback("req-1", 1, None, True)
    assert not query_log.add_feedback("req-1", 2, "c", None)
    assert not query_log.add_feedback("unknown", 0, None, False)
    query_log.close()
    by_id = {r["id"]: r["query"] for r in _rows(db_url)}
    votes = [
        (by_id[f["search_id"]], f["clicked_id"], f["helpful"]) for f in _rows(db_url, feedback)
    ]
    assert votes == [("again", "b", None), ("second", None, True)]


def test_retention_deletes_old_searches_and_their_feedback_at_start_and_hourly(db_url: str) -> None:
    engine = connect(db_url)
    now = datetime.now(UTC)

    def add(query: str, age_days: float) -> None:
        row = {"request_id": query, "position": 0, "query": query, "code_mixed": False}
        row |= {"answered": True, "hits": [], "latency_ms": 1.0}
        with engine.begin() as conn:
            created = now - timedelta(days=age_days)
            search_id = conn.execute(
                insert(searches).values(created_at=created, **row)
            ).inserted_primary_key[0]
            conn.execute(
                insert(feedback).values(search_id=search_id, created_at=created, helpful=True)
            )

    add("old", 31)
    add("recent", 29)
    query_log = _log(db_url, purge_every_s=0.2)
    assert query_log.flush()
    assert [r["query"] for r in _rows(db_url)] == ["recent"]
    assert len(_rows(db_url, feedback)) == 1
    add("old again", 40)  # deleted by the writer's periodic pass
    deadline = time.monotonic() + 10
    while len(_rows(db_url)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["query"] for r in _rows(db_url)] == ["recent"]
    query_log.close()
    engine.dispose()


def test_a_full_queue_drops_and_counts_and_a_failed_write_is_survived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    metrics = Metrics()
    query_log = _log(url, metrics=metrics, queue_size=2)

    def dropped(reason: str) -> float | None:
        return metrics.registry.get_sample_value("faq_querylog_dropped_total", {"reason": reason})

    release = threading.Event()
    write = QueryLog._write
    failed: list[int] = []

    def stuck(self: QueryLog, entries: list[Any]) -> None:
        release.wait(10)
        if not failed:
            failed.append(len(entries))
            raise RuntimeError("database gone")
        write(self, entries)

    monkeypatch.setattr(QueryLog, "_write", stuck)
    started = time.perf_counter()
    for i in range(6):
        query_log.record(f"r{i}", ["q"], [_shaped("a")], 1.0, "c", "m")
    assert time.perf_counter() - started < 0.5  # never waits for the writer
    # The writer holds 0-2 entries, the queue 2: the rest are dropped.
    assert 2 <= (dropped("queue_full") or 0) <= 4
    release.set()
    query_log.flush()
    query_log.record("after", ["q"], [_shaped("a")], 1.0, "c", "m")
    query_log.flush()
    query_log.close()
    assert dropped("write_failed") == failed[0]
    assert [r["request_id"] for r in _rows(url)][-1] == "after"


# --- over HTTP ------------------------------------------------------------------------------

SEARCH_KEY = "s3cret-search-key"


def _app(tmp_path: Path, **overrides: object) -> AbstractContextManager[httpx.Client]:
    return serve(fake_app(tmp_path, **overrides))


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[httpx.Client]:
    url = f"sqlite:///{tmp_path / 'querylog.db'}"
    with _app(tmp_path, query_log=url, search_api_key=SEARCH_KEY) as client:
        yield client


def test_feedback_ties_a_click_or_a_vote_to_its_search(
    logged: httpx.Client, tmp_path: Path
) -> None:
    key = {"X-API-Key": SEARCH_KEY}
    r = logged.post(
        "/search",
        json={"query": "how do I cancel my order, I am at bob@x.org"},
        headers={**key, "X-Request-ID": "rid-1"},
    )
    assert r.status_code == 200
    clicked = r.json()["results"][0]["id"]
    batch = {"queries": [{"query": "where is my parcel"}, {"query": "refund please"}]}
    assert (
        logged.post(
            "/search/batch", json=batch, headers={**key, "X-Request-ID": "rid-2"}
        ).status_code
        == 200
    )

    r = logged.post("/feedback", json={"request_id": "rid-1", "clicked_id": clicked}, headers=key)
    assert r.status_code == 201, r.text
    assert r.json() == {
        "request_id": "rid-1",
        "position": 0,
        "clicked_id": clicked,
        "helpful": None,
    }
    vote = {"request_id": "rid-2", "position": 1, "helpful": False}
    assert logged.post("/feedback", json=vote, headers=key).status_code == 201

    r = logged.post("/feedback", json={"request_id": "nope", "helpful": True}, headers=key)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert "nope" in r.json()["error"]["message"]
    for body in (
        {"request_id": "rid-1"},
        {"request_id": "rid-1", "clicked_id": clicked, "helpful": True},
        {"request_id": "rid-1", "helpful": "yes"},
        {"request_id": "bad id!", "helpful": True},
    ):
        r = logged.post("/feedback", json=body, headers=key)
        assert r.status_code == 422 and r.json()["error"]["type"] == "validation_error", body
    assert logged.post("/feedback", json=vote).status_code == 401

    url = f"sqlite:///{tmp_path / 'querylog.db'}"
    rows = {r["id"]: r for r in _rows(url)}
    assert [(r["request_id"], r["position"], r["query"]) for r in rows.values()] == [
        ("rid-1", 0, "how do I cancel my order, I am at <email>"),
        ("rid-2", 0, "where is my parcel"),
        ("rid-2", 1, "refund please"),
    ]
    votes = [
        (rows[f["search_id"]]["query"], f["clicked_id"], f["helpful"]) for f in _rows(url, feedback)
    ]
    assert votes == [
        ("how do I cancel my order, I am at <email>", clicked, None),
        ("refund please", None, False),
    ]
    # Never a key or the client's address.
    stored = repr([*rows.values(), *_rows(url, feedback)])
    assert SEARCH_KEY not in stored and "127.0.0.1" not in stored


def test_feedback_while_the_log_is_off_says_so(tmp_path: Path) -> None:
    with _app(tmp_path) as client:
        r = client.post("/feedback", json={"request_id": "rid-1", "helpful": True})
        assert r.status_code == 409
        assert "FAQ_QUERY_LOG" in r.json()["error"]["message"]


def test_a_writer_that_sleeps_does_not_slow_a_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'querylog.db'}"

    def timed(client: httpx.Client, n: int = 30) -> list[float]:
        took = []
        for i in range(n):
            started = time.perf_counter()
            assert (
                client.post("/search", json={"query": f"where is my order {i}"}).status_code == 200
            )
            took.append(time.perf_counter() - started)
        return took

    monkeypatch.setattr(querylog, "QUEUE_SIZE", 8)
    with _app(tmp_path, query_log=url) as client:
        timed(client, 5)  # warm
        normal = timed(client)
        write = QueryLog._write

        def sleepy(self: QueryLog, entries: list[Any]) -> None:
            time.sleep(1.0)
            write(self, entries)

        monkeypatch.setattr(QueryLog, "_write", sleepy)
        slow = timed(client)
        # 30 searches against a writer that needs 1 s a batch: the queue fills, entries are
        # dropped and counted, and no search waited for it.
        assert statistics.median(slow) < statistics.median(normal) + 0.05, (normal, slow)
        assert max(slow) < 0.5, slow
        metrics = client.get("/metrics").text
        line = next(
            x
            for x in metrics.splitlines()
            if x.startswith('faq_querylog_dropped_total{reason="queue_full"}')
        )
        assert float(line.split()[-1]) >= 10


@pytest.mark.parametrize("value", ["on", "mysql://db/x", "postgres://db/x", "sqlite:///"])
def test_a_query_log_setting_that_names_no_database_stops_the_start(value: str) -> None:
    with pytest.raises(ValueError, match="query_log"):
        Settings(query_log=value)


def test_the_writer_gathers_searches_into_few_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One transaction a search cost several times the row's own work (LINGER_S): searches that
    # arrive one by one within the linger are written together.
    batches: list[int] = []
    write = QueryLog._write

    def counted(self: QueryLog, entries: list[Any]) -> None:
        batches.append(len(entries))
        write(self, entries)

    monkeypatch.setattr(QueryLog, "_write", counted)
    query_log = _log(f"sqlite:///{tmp_path / 'log.db'}")
    for i in range(40):
        query_log.record(f"req-{i}", ["where is my order"], [_shaped("x")], 1.0, "faq_v1", "m")
        time.sleep(0.002)
    assert query_log.flush()
    query_log.close()
    assert sum(batches) == 40 and len(batches) <= 4, batches
