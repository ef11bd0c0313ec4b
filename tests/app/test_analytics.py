"""GET /admin/analytics and the admin page over real HTTP, on a query log written for the test.

The fixture log holds three planted FAQ gaps (abstained and low-score queries on gift-card
balances, warranty repairs and store opening hours, in several languages) beside noise the
report must leave out of them: answered searches (a larger group of one query), a bigger
abstained group older than the window, and off-topic one-offs. The fake encoder (bag of
words) serves: each planted group shares its words, so it clusters at the distance the test
asks for. The page test drives Debian's chromium with selenium (`make test` installs both).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from app.main import create_app
from index_builder.querylog import connect, feedback, searches
from tests.app.conftest import REPO, build_index, serve, settings_for

# The query log's storage tests' databases (an SQLite file, a throwaway PostgreSQL server).
from tests.app.test_querylog import db_url, postgres  # noqa: F401
from tests.fakes import FakeEncoder

ADMIN = {"X-API-Key": "adm1n-key"}
SEARCH_KEY = "s3arch-key"
MIN_SCORE = 0.5  # FAQ_MIN_SCORE: low-score answers are those below 0.55
# The fake encoder's bag-of-words vectors sit farther apart than a real model's queries.
DISTANCE = 0.6

# (query, lang, code_mixed, answer_score): abstained below MIN_SCORE, a low-score answer
# between 0.5 and 0.55.
GIFT = [
    ("gift card balance", "en", False, 0.31),
    ("gift card balance", "en", False, 0.31),
    ("check my gift card balance", "en", False, 0.35),
    ("saldo gift card balance", "es", True, 0.30),
    ("gift card balance prüfen", "de", True, 0.29),
    ("gift card balance please", "en", False, 0.40),
    ("gift card balance por favor", "es", True, 0.52),
]
WARRANTY = [
    ("warranty repair laptop", "en", False, 0.33),
    ("warranty repair phone", "en", False, 0.36),
    ("reparación warranty repair", "es", True, 0.30),
    ("warranty repair garantie", "de", True, 0.28),
    ("warranty repair status", "en", False, 0.54),
    ("warranty repair how long", "en", False, 0.41),
]
HOURS = [
    ("store opening hours", "en", False, 0.30),
    ("store opening hours sunday", "en", False, 0.32),
    ("horario store opening hours", "es", True, 0.31),
    ("store opening hours öffnungszeiten", "de", True, 0.27),
    ("store opening hours today", "en", False, 0.38),
]
OFF_TOPIC = [("asdf qwer", None, False, 0.1), ("tell a joke", "en", False, 0.2)]
# Answered well: never a gap, though the largest group of alike queries in the log.
ANSWERED = [("where is my order", "en", False, 0.9)] * 10 + [("return label", "en", False, 0.8)] * 3
# Abstained, but 20 days ago: outside a 7-day window.
OLD = [("loyalty points redeem", "en", False, 0.2)] * 12


def _row(query: str, lang: str | None, mixed: bool, score: float, age: timedelta) -> dict[str, Any]:
    answered = score >= MIN_SCORE
    top = {"where is my order": "order-track.en", "return label": "return-label.en"}.get(query)
    top = top or ("payment-gift-card.en" if answered else None)
    return {
        "created_at": datetime.now(UTC) - age,
        "request_id": f"r{time.monotonic_ns()}",
        "position": 0,
        "query": query,
        "lang": lang,
        "code_mixed": mixed,
        "answered": answered,
        "answer_score": score,
        "top_id": top,
        "top_topic": top.split(".")[0] if top else None,
        "top_score": score if answered else None,
        "hits": [{"id": top, "topic": top.split(".")[0], "score": score}] if top else [],
        "latency_ms": 5.0,
        "collection": "faq_v1",
        "model": "fake",
    }


def write_log(url: str) -> None:
    """The fixture log, through the query log's own schema (index_builder/querylog.py)."""
    engine = connect(url)
    recent = [*GIFT, *WARRANTY, *HOURS, *OFF_TOPIC, *ANSWERED]
    with engine.begin() as conn:
        for i, row in enumerate(recent):
            values = _row(*row, age=timedelta(minutes=len(recent) - i))
            search_id = conn.execute(insert(searches).values(values)).inserted_primary_key[0]
            if row[0] == "where is my order" and i % 2:  # 5 of 10 clicked
                click = {"search_id": search_id, "clicked_id": "order-track.en"}
                conn.execute(insert(feedback).values(created_at=datetime.now(UTC), **click))
        conn.execute(insert(searches), [_row(*r, age=timedelta(days=20)) for r in OLD])
    engine.dispose()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    directory = tmp_path_factory.mktemp("analytics")
    url = f"sqlite:///{directory / 'querylog.db'}"
    write_log(url)
    build_index(directory / "qdrant", FakeEncoder(dim=384))
    settings = settings_for(
        directory / "unused-model",
        directory / "qdrant",
        query_log=url,
        query_log_retention_days=90,
        min_score=MIN_SCORE,
        admin_api_key=ADMIN["X-API-Key"],
        search_api_key=SEARCH_KEY,
    )
    app = create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=384))
    with serve(app) as client:
        yield client


def _analytics(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/admin/analytics", params={"days": 7, "distance": DISTANCE}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_three_planted_gaps_are_the_top_gaps(service: httpx.Client) -> None:
    body = _analytics(service)
    planted = [GIFT, WARRANTY, HOURS]
    assert [g["size"] for g in body["gaps"][:3]] == [len(p) for p in planted]
    for gap, group in zip(body["gaps"], planted, strict=False):
        texts = {q for q, *_ in group}
        assert len(gap["examples"]) == 3 and set(gap["examples"]) <= texts, gap
        assert gap["languages"] == dict(Counter(lang for _, lang, *_ in group)), gap
    # Nothing else repeats: the rest are one-offs (answered and old searches are left out).
    assert len(body["gaps"]) == 3
    # The nearest existing topic: the FAQ answers how to use a gift card, and whether products
    # have a warranty, not the balance or a repair.
    assert [g["nearest_topic"] for g in body["gaps"][:2]] == [
        "payment-gift-card",
        "product-warranty",
    ]
    assert all(0 < g["nearest_score"] <= 1 for g in body["gaps"])
    weak = len(GIFT) + len(WARRANTY) + len(HOURS) + len(OFF_TOPIC)
    assert (body["gap_queries"], body["low_score_below"]) == (weak, pytest.approx(0.55))


def test_the_report_counts_abstentions_topics_and_clicks_in_the_window(
    service: httpx.Client,
) -> None:
    body = _analytics(service)
    recent = [*GIFT, *WARRANTY, *HOURS, *OFF_TOPIC, *ANSWERED]
    abstained = [r for r in recent if r[3] < MIN_SCORE]
    assert (body["searches"], body["abstained"], body["clicks"]) == (len(recent), len(abstained), 5)

    def rate(rows: list[Any]) -> dict[str, Any]:
        n, a = len(rows), sum(r[3] < MIN_SCORE for r in rows)
        return {"searches": n, "abstained": a, "rate": round(a / n, 4)}

    assert body["by_kind"] == {
        "code_mixed": rate([r for r in recent if r[2]]),
        "monolingual": rate([r for r in recent if not r[2]]),
    }
    assert body["by_language"]["es"] == rate([r for r in recent if r[1] == "es"])
    assert body["by_language"]["und"] == rate([r for r in recent if r[1] is None])
    assert next(iter(body["by_language"])) == "en"  # most searched first
    assert body["top_topics"] == [
        {"topic": "order-track", "shown": 10, "clicks": 5},
        {"topic": "return-label", "shown": 3, "clicks": 0},
        {"topic": "payment-gift-card", "shown": 2, "clicks": 0},
    ]
    assert [t["topic"] for t in body["never_clicked"]] == ["return-label", "payment-gift-card"]


def test_the_report_reads_sqlite_and_postgresql_alike(db_url: str) -> None:  # noqa: F811
    from app.services.analytics import read_log

    write_log(db_url)
    engine = connect(db_url)
    try:
        report = read_log(engine, days=7, low_score_below=0.55)
    finally:
        engine.dispose()
    weak = [*GIFT, *WARRANTY, *HOURS, *OFF_TOPIC]
    assert sorted(report.weak) == sorted((q, lang) for q, lang, *_ in weak)
    assert report.weak[0] == ("tell a joke", "en")  # newest first
    assert report.summary["by_kind"]["code_mixed"] == {
        "searches": 7,
        "abstained": 6,
        "rate": 0.8571,
    }
    assert report.summary["top_topics"][0] == {"topic": "order-track", "shown": 10, "clicks": 5}


def test_analytics_needs_the_admin_key_and_the_log_and_the_admin_key_opens_search(
    service: httpx.Client, tmp_path: Path
) -> None:
    assert service.get("/admin/analytics").status_code == 401
    r = service.get("/admin/analytics", params={"days": 0}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["type"] == "validation_error"
    build_index(tmp_path / "qdrant", FakeEncoder(dim=384))
    keys = {"admin_api_key": "k", "search_api_key": SEARCH_KEY}
    settings = settings_for(tmp_path / "m", tmp_path / "qdrant", **keys)
    with serve(create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=384))) as client:
        r = client.get("/admin/analytics", headers={"X-API-Key": "k"})
        assert r.status_code == 409 and "FAQ_QUERY_LOG" in r.json()["error"]["message"]
        # The admin key opens the search routes too (the admin page's query box sends it).
        for key in ("k", SEARCH_KEY):
            assert client.post(
                "/search", json={"query": "x"}, headers={"X-API-Key": key}
            ).is_success
        assert client.post("/search", json={"query": "x"}).status_code == 401


def test_the_admin_page_holds_no_data_and_runs_only_its_own_script(service: httpx.Client) -> None:
    r = service.get("/admin/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "gift card" not in r.text
    policy = r.headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "connect-src 'self'" in policy


# --- the default distance, on the real model --------------------------------------------

# Eight queries per missing topic, in English, Spanish, German and French, some mixed.
REAL_PLANTED = [
    [
        "gift card balance check",
        "how much is left on my gift card",
        "saldo de mi tarjeta regalo",
        "gutschein guthaben prüfen",
        "mi gift card no funciona",
        "geschenkkarte guthaben abfragen",
        "gift card code invalid",
        "solde carte cadeau",
    ],
    [
        "warranty repair for my broken laptop",
        "how do I claim a warranty repair",
        "garantía reparación de mi móvil",
        "garantie reparatur handy kaputt",
        "my headphones broke, warranty claim",
        "reparación bajo garantía cuánto tarda",
        "warranty claim status",
        "réparation sous garantie",
    ],
    [
        "store opening hours",
        "what time does the shop open on sunday",
        "horario de la tienda",
        "öffnungszeiten filiale",
        "is the store open on public holidays",
        "a qué hora abre la tienda",
        "laden öffnungszeiten samstag",
        "heures d'ouverture du magasin",
    ],
]


def _real_noise() -> list[str]:
    """Off-topic queries (12 of other domains, 3 of each other kind) and shopper questions
    on 8 different areas of the FAQ: what else abstains or scores low."""
    import json

    kinds: Counter[str] = Counter()
    noise = []
    for line in (REPO / "data" / "offtopic" / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        if kinds[row["kind"]] < (12 if row["kind"] == "other_domain" else 3):
            kinds[row["kind"]] += 1
            noise.append(row["query"])
    areas: set[str] = set()
    for line in (REPO / "data" / "shopper" / "dev.jsonl").read_text().splitlines():
        row = json.loads(line)
        area = row["faq_id"].split("-")[0]
        if len(areas) < 8 and area not in areas:
            areas.add(area)
            noise.append(row["query"])
    return noise


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_the_default_distance_keeps_planted_gaps_apart_on_the_real_model(
    real_onnx_dir: Path, variant: str
) -> None:
    from app.services.analytics import DEFAULT_DISTANCE, find_gaps
    from index_builder.model.encoder import OnnxEncoder

    weak = [(q, "en") for q in [*(q for group in REAL_PLANTED for q in group), *_real_noise()]]
    texts = list(dict.fromkeys(q for q, _ in weak))
    vectors = OnnxEncoder.load(real_onnx_dir, variant=variant).encode_queries(texts)
    gaps = [gap for gap, _ in find_gaps(weak, texts, vectors, DEFAULT_DISTANCE)]
    found = []
    for gap in gaps[:3]:
        groups = [i for i, group in enumerate(REAL_PLANTED) if set(gap["examples"]) <= set(group)]
        assert len(groups) == 1 and gap["size"] >= 6, gaps[:4]
        found.append(groups[0])
    assert sorted(found) == [0, 1, 2]
    assert gaps[3]["size"] <= 4, gaps[:4]  # the largest cluster of noise


# --- the page in headless Chromium ---------------------------------------------------------

SCREENSHOT = REPO / "artifacts" / "admin-ui" / "screenshot.png"


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no chromium/chromedriver: make test installs Debian's chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_admin_page_lists_the_planted_gaps_in_chromium(
    service: httpx.Client, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{service.base_url}/admin/ui?distance={DISTANCE}")
    browser.find_element(By.ID, "key").send_keys(ADMIN["X-API-Key"])
    browser.find_element(By.ID, "open").click()
    wait = WebDriverWait(browser, 15)
    try:
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gaps tbody tr")) >= 3)
        rows = browser.find_elements(By.CSS_SELECTOR, "#gaps tbody tr")
        sizes = [r.find_element(By.CSS_SELECTOR, "td").text for r in rows]
        assert sizes == ["7", "6", "5"]
        planted = ("gift card balance", "warranty repair", "store opening hours")
        for row, example in zip(rows, planted, strict=True):
            assert example in row.text, row.text
        assert "payment-gift-card" in rows[0].text
        assert "order-track" in browser.find_element(By.ID, "topics").text
        assert "return-label" in browser.find_element(By.ID, "unclicked").text
        assert browser.find_element(By.ID, "abstain-rate").text.endswith("%")

        browser.find_element(By.ID, "query").send_keys("Where is my order and how can I track it?")
        browser.find_element(By.CSS_SELECTOR, "#try button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "verdict"), "answer score"))
        answers = browser.find_elements(By.CSS_SELECTOR, "#answers tbody tr")
        assert answers and "order-track" in answers[0].text
    finally:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    # The page ran without a script error (its CSP allows its own script only).
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
