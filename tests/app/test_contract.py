"""The API contract: the OpenAPI document says what the server does, and schemathesis checks it.

`test_schemathesis_finds_no_failure` runs schemathesis (pinned in pyproject's `dev` extra)
in-process against the app with its lifespan: every operation, both keys set, a fixed seed and a
bounded number of examples, all of its checks (status codes, the error schema, headers, Allow,
negative and positive data, auth, stateful links); any failure fails the test with the request
that shows it. The other tests pin the pieces one by one, each cheaper to read when it breaks.

The fake encoder serves: the contract is about HTTP, not about the model.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python import asgi

from app.main import create_app
from tests.app.conftest import SAMPLE_FAQ, build_index, serve, settings_for
from tests.fakes import FakeEncoder

SEARCH_KEY = "s3arch-key"
ADMIN_KEY = "adm1n-key"
SEARCH = {"X-API-Key": SEARCH_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
DIM = 384
# Examples per operation and phase: about 900 requests in about 25 s on two cores.
# A long run: CONTRACT_SEED=1 CONTRACT_MAX_EXAMPLES=70 pytest tests/app/test_contract.py -k
# schemathesis -s (about 1,100 cases per seed).
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("CONTRACT_SEED", "11"))


def _small_faq(directory: Path) -> Path:
    # The first entries of the sample FAQ: a reindex of them takes milliseconds.
    path = directory / "faq.jsonl"
    path.write_text("\n".join(SAMPLE_FAQ.read_text().splitlines()[:12]) + "\n", encoding="utf-8")
    return path


def make_app(directory: Path, **overrides: Any) -> FastAPI:
    faq = _small_faq(directory)
    build_index(directory / "qdrant", FakeEncoder(dim=DIM), faq)
    values: dict[str, Any] = {
        "search_api_key": SEARCH_KEY,
        "admin_api_key": ADMIN_KEY,
        "reindex_sources": {"default": str(faq)},
        "jobs_dir": directory / "jobs",
        **overrides,
    }
    settings = settings_for(directory / "unused-model", directory / "qdrant", **values)
    return create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=DIM))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with serve(make_app(tmp_path_factory.mktemp("contract"))) as c:
        yield c


@pytest.fixture(scope="module")
def doc(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


# --- schemathesis --------------------------------------------------------------------------


def _unique_ids(body: Any) -> bool:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return True
    ids = [i.get("id") for i in items if isinstance(i, dict)]
    return all(n == 1 for n in Counter(map(repr, ids)).values())


def _failures(stream: Any) -> tuple[int, list[str]]:
    cases, failures, seen = 0, [], set()
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    key = (event.recorder.label, check.name)
                    if key in seen:
                        continue
                    seen.add(key)
                    interaction = event.recorder.interactions.get(case_id)
                    answer = ""
                    if interaction is not None and interaction.response is not None:
                        content = (interaction.response.content or b"")[:500]
                        answer = f"\n  -> {interaction.response.status_code} {content!r}"
                    failures.append(
                        f"{event.recorder.label} [{check.name}] "
                        f"{check.failure_info.failure.title}\n  "
                        f"{check.failure_info.code_sample[:800]}{answer}"
                    )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"schemathesis error: {event}")
    return cases, failures


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    # A body limit no generated example reaches: 413 is documented and tested on its own below,
    # but it is not a property of a body's schema, so a schema-valid body must never meet it.
    app = make_app(tmp_path, max_body_bytes=4 * 1024 * 1024)
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "auth": {
                "openapi": {
                    "SearchKey": {"api_key": SEARCH_KEY},
                    "AdminKey": {"api_key": ADMIN_KEY},
                }
            },
        }
    )
    started = time.perf_counter()
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

        @schema.hook
        def filter_body(context: Any, body: Any) -> bool:
            # "Ids must be unique" (POST /admin/reindex, a 422 otherwise) is in the document's
            # words only: JSON Schema cannot say "unique by a key".
            return _unique_ids(body)

        operations = {f"{m.upper()} {p}" for p, m, _ in _operations(app.openapi())}
        cases, failures = _failures(from_schema(schema).execute())
    finally:
        # The lifespan schemathesis started: stop it here, not at interpreter exit.
        asgi.shutdown_lifespans()
    took = time.perf_counter() - started
    print(f"schemathesis: {len(operations)} operations, {cases} cases, {len(failures)} failures")
    print(f"schemathesis: {took:.1f} s")
    assert not failures, "\n\n".join(failures)
    assert len(operations) == 19 and cases > 10 * len(operations)


# --- the document ----------------------------------------------------------------------------


def test_every_error_is_documented_in_the_one_error_shape(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text and '"ValidationError"' not in text
    for path, _, op in _operations(doc):
        if path.startswith("/health"):
            continue  # a 503 from /health/ready is its own body, for probes (below)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/search", "post", {"200", "401", "408", "413", "422", "429", "503"}),
        ("/search/batch", "post", {"200", "401", "408", "413", "422", "429", "503"}),
        ("/feedback", "post", {"201", "401", "404", "408", "409", "413", "422", "503"}),
        ("/v1/embeddings", "post", {"200", "401", "404", "408", "413", "422", "429", "503"}),
        ("/v1/models", "get", {"200", "401"}),
        ("/v1/models/{model}", "get", {"200", "401", "404"}),
        ("/info", "get", {"200", "401"}),
        ("/health/live", "get", {"200"}),
        ("/health/live", "head", {"200"}),
        ("/health/ready", "get", {"200", "503"}),
        ("/health/ready", "head", {"200", "503"}),
        ("/admin/reindex", "post", {"202", "401", "403", "409", "408", "413", "422", "503"}),
        ("/admin/reindex", "get", {"200", "401", "403"}),
        ("/admin/reindex/{job_id}", "get", {"200", "401", "403", "404"}),
        (
            "/admin/rollback",
            "post",
            {"200", "401", "403", "404", "409", "408", "413", "422", "503"},
        ),
        ("/admin/collections", "get", {"200", "401", "403", "409", "503"}),
        (
            "/admin/faq/{faq_id}",
            "put",
            {"200", "201", "401", "403", "409", "408", "413", "422", "503"},
        ),
        ("/admin/faq/{faq_id}", "delete", {"200", "401", "403", "404", "409", "422", "503"}),
        ("/admin/analytics", "get", {"200", "401", "403", "409", "422", "429", "503"}),
    ],
)
def test_each_route_lists_the_statuses_it_answers_with(
    doc: dict[str, Any], path: str, method: str, statuses: set[str]
) -> None:
    assert set(doc["paths"][path][method]["responses"]) == statuses


def test_both_keys_are_security_schemes(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    for name in ("SearchKey", "AdminKey"):
        assert schemes[name] == {**schemes[name], "type": "apiKey", "in": "header"}
        assert schemes[name]["name"] == "X-API-Key"
    for path, method, op in _operations(doc):
        expected: list[dict[str, list[str]]] = []
        if path.startswith("/admin"):
            expected = [{"AdminKey": []}]
        elif not path.startswith("/health"):
            expected = [{"SearchKey": []}]
        assert op.get("security", []) == expected, (path, method)


def test_without_a_search_key_the_search_routes_declare_no_security(tmp_path: Path) -> None:
    app = make_app(tmp_path, search_api_key=None)
    doc = app.openapi()
    assert "SearchKey" not in doc["components"]["securitySchemes"]
    for op in (doc["paths"]["/search"]["post"], doc["paths"]["/v1/embeddings"]["post"]):
        assert "security" not in op and "401" not in op["responses"]
    assert doc["paths"]["/admin/collections"]["get"]["security"] == [{"AdminKey": []}]


def test_limits_that_are_settings_are_in_the_document(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["BatchSearchRequest"]["properties"]["queries"]["maxItems"] == 32
    listed = [v for v in schemas["EmbeddingsRequest"]["properties"]["input"]["anyOf"]]
    assert [v.get("maxItems") for v in listed if v["type"] == "array"] == [32]
    fake = FakeEncoder(dim=DIM)
    assert schemas["EmbeddingsRequest"]["properties"]["model"]["enum"] == [
        fake.name,
        fake.fingerprint,
    ]
    assert schemas["ReindexRequest"]["properties"]["source"]["enum"] == ["default"]


# --- reindex bodies: items XOR source, in the document and on the server ---------------------


def _valid(schema: dict[str, Any], doc: dict[str, Any], body: Any) -> bool:
    import jsonschema_rs

    # The document's components beside the schema, so its `$ref`s resolve.
    resolved = {**schema, "components": doc["components"]}
    return bool(jsonschema_rs.validator_for(resolved).is_valid(body))


ITEM = {"id": "gift-wrap", "question": "Can you gift wrap it?", "answer": "Yes.", "lang": "en"}


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({}, False),
        ({"items": [ITEM], "source": "default"}, False),
        ({"items": None}, False),
        ({"items": []}, False),
        ({"source": "elsewhere"}, False),
        ({"items": [{**ITEM, "answer": " \x1c\u3000"}]}, False),
        ({"items": [{**ITEM, "lang": " e "}]}, False),
        ({"items": [{**ITEM, "id": "\x85"}]}, False),
        ({"items": [ITEM]}, True),
        ({"source": "default"}, True),
    ],
)
def test_reindex_body_schema_and_server_agree(
    doc: dict[str, Any], client: httpx.Client, body: dict[str, Any], ok: bool
) -> None:
    schema = {"$ref": "#/components/schemas/ReindexRequest"}
    assert _valid(schema, doc, body) is ok
    r = client.post("/admin/reindex", json=body, headers=ADMIN)
    if ok:
        assert r.status_code == 202, r.text
        _wait_idle(client)
    else:
        assert r.status_code == 422, r.text
        assert r.json()["error"]["type"] == "validation_error"


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        ("where", True),
        (" \x1c\x1f\x85\u3000 ", False),  # whitespace to Python, not all of it to ECMA's \s
        ("\ufeff", True),  # whitespace to ECMA's \s, not to Python: the server keeps it
        ("", False),
    ],
)
def test_blank_means_the_same_in_the_document_and_on_the_server(
    doc: dict[str, Any], client: httpx.Client, query: str, ok: bool
) -> None:
    schema = {"$ref": "#/components/schemas/SearchRequest"}
    assert _valid(schema, doc, {"query": query}) is ok
    r = client.post("/search", json={"query": query}, headers=SEARCH)
    assert r.status_code == (200 if ok else 422), r.text


EDIT = {"question": "Can you gift wrap it?", "answer": "Yes.", "lang": "en"}


@pytest.mark.parametrize(
    ("faq_id", "body", "ok"),
    [
        ("gift-wrap", EDIT, True),
        ("gift/wrap.es", {**EDIT, "topic": "gift-wrap", "tags": ["gifts"]}, True),
        (" ", EDIT, False),
        ("x" * 129, EDIT, False),
        ("gift-wrap", {**EDIT, "question": "\u3000\x1c"}, False),
        ("gift-wrap", {**EDIT, "lang": " e "}, False),
        ("gift-wrap", {**EDIT, "lang": " e\u3000s"}, True),
        ("gift-wrap", {**EDIT, "colour": "red"}, False),
        ("gift-wrap", {k: v for k, v in EDIT.items() if k != "answer"}, False),
    ],
)
def test_faq_edit_schema_and_server_agree(
    doc: dict[str, Any], client: httpx.Client, faq_id: str, body: dict[str, Any], ok: bool
) -> None:
    operation = doc["paths"]["/admin/faq/{faq_id}"]["put"]
    id_schema = operation["parameters"][0]["schema"]
    body_schema = {"$ref": "#/components/schemas/FaqEdit"}
    assert (_valid(id_schema, doc, faq_id) and _valid(body_schema, doc, body)) is ok
    r = client.put(f"/admin/faq/{faq_id}", json=body, headers=ADMIN)
    assert r.status_code in ((200, 201) if ok else (422,)), r.text
    if ok:
        assert r.json()["id"] == faq_id.strip()
        deleted = client.delete(f"/admin/faq/{faq_id}", headers=ADMIN)
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    else:
        # DELETE takes the same id: one the document refuses, the server refuses too.
        deleted = client.delete(f"/admin/faq/{faq_id}", headers=ADMIN)
        assert deleted.status_code == (422 if not _valid(id_schema, doc, faq_id) else 404)


def _wait_idle(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = client.get("/admin/reindex", headers=ADMIN).json()
        if all(j["state"] not in ("queued", "running") for j in jobs):
            return
        time.sleep(0.05)
    raise TimeoutError("reindex still running after 30 s")


# --- HTTP details ----------------------------------------------------------------------------


def test_undecodable_body_is_the_documented_422(client: httpx.Client) -> None:
    headers = {**SEARCH, "Content-Type": "application/json"}
    for content in (b'{"query": "\xff\xfe"}', b"\xff\xfe\xfd", b'{"query": '):
        r = client.post("/search", content=content, headers=headers)
        assert r.status_code == 422, (content, r.text)
        error = r.json()["error"]
        assert error["type"] == "validation_error" and error["details"][0]["field"] == "body"


def test_a_lone_surrogate_is_422_not_a_tokenizer_500(client: httpx.Client) -> None:
    # JSON allows "\ud800", Unicode does not; the real tokenizer would raise on it.
    headers = {**SEARCH, "Content-Type": "application/json"}
    r = client.post("/search", content=b'{"query": "a\\ud800b"}', headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "query"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/admin/faq/some-id", "PUT, DELETE"),
        ("GET", "/admin/faq/some-id", "PUT, DELETE"),
        ("PATCH", "/admin/reindex", "GET, POST"),
        ("GET", "/search", "POST"),
        ("DELETE", "/health/ready", "GET, HEAD"),
    ],
)
def test_405_names_every_method_of_the_path(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path, headers=ADMIN)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"]["type"] == "method_not_allowed"


def test_health_routes_answer_head_and_ready_503_is_its_own_body(doc: dict[str, Any]) -> None:
    ready = doc["paths"]["/health/ready"]
    schema = ready["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ReadyResponse"}
    assert "content" not in ready["head"]["responses"]["503"]


def test_head_on_health_routes(client: httpx.Client) -> None:
    live = client.head("/health/live")
    assert live.status_code == 200 and live.content == b""
    ready = client.head("/health/ready")
    assert ready.status_code == client.get("/health/ready").status_code == 200
    assert ready.content == b""


def test_integral_numbers_are_integers_and_strings_are_not(client: httpx.Client) -> None:
    ok = client.post("/search", json={"query": "cancel order", "top_k": 3.0}, headers=SEARCH)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 3
    for top_k in ("3", True, 2.5):
        r = client.post("/search", json={"query": "cancel order", "top_k": top_k}, headers=SEARCH)
        assert r.status_code == 422, top_k


def test_rollback_to_a_collection_not_kept_is_404(client: httpx.Client) -> None:
    r = client.post("/admin/rollback", json={"collection": "faq_v99"}, headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_oversize_body_is_the_documented_413(tmp_path: Path) -> None:
    with serve(make_app(tmp_path, max_body_bytes=1024)) as c:
        r = c.post("/search", json={"query": "x" * 2000}, headers=SEARCH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
