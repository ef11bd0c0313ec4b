"""/search and /search/batch answers (issue 11): one per topic, in the shopper's language, or none.

The service runs with the hashing FakeEncoder over the sample FAQ (texts that share words rank
each other first) and an empty model directory, so no calibrated abstain rule applies unless a
request or FAQ_MIN_SCORE sets one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.app.conftest import build_index, serve, settings_for
from tests.fakes import FakeEncoder

# Words of order-cancel's English, Spanish and Portuguese questions: ungrouped, its translations
# fill the top.
MIXED = "how do I cancel my order, cómo cancelo mi pedido, como cancelo meu pedido"


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qdrant")
    build_index(path, FakeEncoder(dim=384))
    return path


def _serve(index_path: Path, model_dir: Path, **settings: object) -> Any:
    fake = FakeEncoder(dim=384)
    app = create_app(
        settings_for(model_dir, index_path, **settings), encoder_factory=lambda s: fake
    )
    return serve(app)


@pytest.fixture(scope="module")
def fake_api(index_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with _serve(index_path, tmp_path_factory.mktemp("model")) as client:
        yield client


def search(api: httpx.Client, **body: object) -> dict[str, Any]:
    r = api.post("/search", json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_one_answer_per_topic_by_default_and_all_entries_without_grouping(
    fake_api: httpx.Client,
) -> None:
    ungrouped = search(fake_api, query=MIXED, top_k=3, group=False)
    assert [r["topic"] for r in ungrouped["results"]].count("order-cancel") >= 2
    assert {r["lang_reason"] for r in ungrouped["results"]} == {"ranked"}
    grouped = search(fake_api, query=MIXED, top_k=3)
    topics = [r["topic"] for r in grouped["results"]]
    assert topics[0] == "order-cancel" and len(set(topics)) == 3
    scores = [r["score"] for r in grouped["results"]]
    assert scores == sorted(scores, reverse=True)
    assert grouped["answered"] is True
    assert grouped["answer_score"] == pytest.approx(ungrouped["results"][0]["score"])


def test_the_requested_language_else_english(fake_api: httpx.Client) -> None:
    query = "how do I cancel my order, meine Bestellung"
    first = search(fake_api, query=query, top_k=1, lang="DE")["results"][0]
    assert (first["id"], first["lang"], first["lang_reason"]) == (
        "order-cancel.de",
        "de",
        "requested",
    )
    # No Japanese entry: the query's language, English. (Not "how do I cancel my order":
    # Lingua's low-accuracy mode reads it as German, and the German entry would follow.)
    first = search(fake_api, query="cancel my order please", top_k=1, lang="ja")["results"][0]
    assert (first["id"], first["lang_reason"]) == ("order-cancel", "query")


def test_the_query_language_is_detected_and_served(fake_api: httpx.Client) -> None:
    body = search(fake_api, query="Wie kann ich meine Bestellung stornieren bitte", top_k=1)
    assert body["query_lang"] == "de"
    assert body["results"][0]["id"] == "order-cancel.de"
    assert body["results"][0]["lang_reason"] == "query"


def _abstained(api: httpx.Client) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("faq_search_abstained_total "):
            return float(line.split()[1])
    raise AssertionError("faq_search_abstained_total not exported")


def test_below_min_score_nothing_is_answered_and_it_is_counted(fake_api: httpx.Client) -> None:
    before = _abstained(fake_api)
    body = search(fake_api, query="weather in paris", min_score=1.5)
    assert body["answered"] is False and body["results"] == []
    assert body["answer_score"] < 1.5
    assert _abstained(fake_api) == before + 1
    # No threshold anywhere (this model was never calibrated): always an answer.
    assert search(fake_api, query="weather in paris")["answered"] is True


def test_batch_items_say_whether_they_answer(fake_api: httpx.Client) -> None:
    r = fake_api.post(
        "/search/batch",
        json={"queries": [{"query": MIXED, "top_k": 2}, {"query": "x y z", "min_score": 1.9}]},
    )
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert first["answered"] is True and len({x["topic"] for x in first["results"]}) == 2
    assert second["answered"] is False and second["results"] == []
    assert "query_lang" in first and "answer_score" in second


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "min_score": 3},
        {"query": "x", "min_score": "0.5"},
        {"query": "x", "group": "yes"},
        {"query": "x", "lang": "e"},
    ],
)
def test_bad_answer_fields_are_422(fake_api: httpx.Client, body: dict[str, object]) -> None:
    assert fake_api.post("/search", json=body).status_code == 422


def test_faq_min_score_is_the_default_and_a_request_overrides_it(tmp_path: Path) -> None:
    # Its own index: the module's service holds the other embedded directory.
    index = tmp_path / "qdrant"
    build_index(index, FakeEncoder(dim=384))
    model = tmp_path / "model"
    model.mkdir()
    with _serve(index, model, min_score=1.5) as client:
        assert search(client, query=MIXED)["answered"] is False
        assert search(client, query=MIXED, min_score=-2)["answered"] is True


def test_readme_example_on_the_real_model(api: httpx.Client) -> None:
    """The issue's example: one FAQ three times in three languages; now three answers."""
    body = search(api, query="can I cancel mi pedido", top_k=3)
    results = body["results"]
    assert len({r["topic"] for r in results}) == 3
    assert results[0]["topic"] == "order-cancel"
    assert results[0]["lang"] in ("es", "en") and results[0]["lang_reason"] in ("query", "english")
    asked = search(api, query="can I cancel mi pedido", top_k=3, lang="pt")["results"][0]
    assert (asked["id"], asked["lang_reason"]) == ("order-cancel.pt", "requested")
    german = search(api, query="wie lange dauert die Rückerstattung", top_k=1)
    assert german["query_lang"] == "de" and german["results"][0]["lang"] == "de"


@pytest.mark.parametrize("local_search", ["matrix", "qdrant"])
def test_an_explicit_topic_groups_entries_whatever_their_ids(
    tmp_path: Path, local_search: str
) -> None:
    rows = [
        {"id": "faq-1", "question": "cancel order now", "lang": "en", "topic": "cancel"},
        {"id": "faq-2", "question": "cancel order ahora", "lang": "es", "topic": "cancel"},
        {"id": "faq-3", "question": "refund time", "lang": "en"},
    ]
    faq = tmp_path / "faq.jsonl"
    faq.write_text("".join(json.dumps({**r, "answer": "a"}) + "\n" for r in rows), "utf-8")
    index = tmp_path / "qdrant"
    build_index(index, FakeEncoder(dim=384), faq)
    model = tmp_path / "model"
    model.mkdir()
    with _serve(index, model, local_search=local_search) as client:
        results = search(client, query="cancel order", top_k=2)["results"]
    assert [(r["id"], r["topic"]) for r in results] == [("faq-1", "cancel"), ("faq-3", "faq-3")]
