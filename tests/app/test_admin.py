"""Admin API over real HTTP and real Qdrant local mode: reindex jobs, gate, rollback, edits.

The fake encoder serves where the model is beside the point (auth, job mechanics, rollback,
edits); the quality gate runs on the real exported model, since what it judges is retrieval.
The crash test kills a real separate process in the middle of a reindex.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient

from app.core.config import Settings
from app.core.heap import GEN0_THRESHOLD
from app.main import create_app
from app.services import index_guard
from app.services.index_guard import retrieval
from app.services.jobs_store import INTERRUPTED, JobRecord, JobStore
from index_builder.faq import FaqItem, read_faq
from index_builder.model.encoder import Encoder, OnnxEncoder
from index_builder.store import EmbeddedStore, QdrantStore, Store
from index_builder.store.embedded import Entries
from tests.app.conftest import REPO, SAMPLE_FAQ, build_index, serve, settings_for
from tests.fakes import FakeEncoder

# The first entries of the sample FAQ (order-cancel among them): writing points to local mode
# costs a sqlite commit each, and the whole file would make every test seconds slower.
SMALL = read_faq(SAMPLE_FAQ)[:24]
KEY = "adm1n-s3cret"
AUTH = {"X-API-Key": KEY}
DIM = 384

NEW_ITEMS = [
    {
        "id": "loyalty-points",
        "question": "How do I redeem my loyalty points for a discount?",
        "answer": "Open Rewards and tap Redeem.",
        "lang": "en",
        "market": "global",
        "tags": ["loyalty"],
    },
    {
        "id": "gift-wrap",
        "question": "Can you gift wrap my parcel?",
        "answer": "Choose gift wrapping at checkout.",
        "lang": "en",
    },
    {
        "id": "loyalty-points.es",
        "question": "¿Cómo canjeo mis puntos de fidelidad?",
        "answer": "Abre Recompensas y pulsa Canjear.",
        "lang": "es",
        "market": "mx",
    },
]


class BlockingEncoder(FakeEncoder):
    """Passages wait for `release` once armed, so a reindex job stays running."""

    def __init__(self) -> None:
        super().__init__(dim=DIM)
        self.armed = False
        self.release = threading.Event()

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if self.armed:
            assert self.release.wait(30), "the test never released the encoder"
        return super().encode_passages(texts)


@contextmanager
def qdrant_backend(server: QdrantClient) -> Iterator[None]:
    """The service's store a `QdrantStore` on `server`, as with FAQ_QDRANT_URL set."""

    def open_store(settings: Settings, lock_timeout_s: float = 30.0) -> Store:
        return QdrantStore(
            server,
            alias=settings.collection_alias,
            keep=settings.keep_collections,
            retrieval=retrieval(settings),
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_guard, "open_settings_store", open_store)
        yield


@contextmanager
def admin_app(
    tmp_path: Path,
    encoder: Encoder | None = None,
    *,
    index_encoder: Encoder | None = None,
    model_dir: Path | None = None,
    faq: Path | None = None,
    build: bool = True,
    server: QdrantClient | None = None,
    **overrides: object,
) -> Iterator[httpx.Client]:
    """The service over an index of `faq` with the admin key set and a jobs dir of its own;
    with `server` (qdrant-client's local mode, the tests' stand-in), on the Qdrant backend."""
    encoder = encoder or FakeEncoder(dim=DIM)
    tmp_path.mkdir(parents=True, exist_ok=True)
    qdrant = tmp_path / "qdrant"
    if build:
        if faq is None:
            faq = tmp_path / "small.jsonl"
            faq.write_text("".join(i.model_dump_json() + "\n" for i in SMALL), encoding="utf-8")
        if server is None:
            build_index(qdrant, index_encoder or encoder, faq)
        else:
            QdrantStore(server).build(read_faq(faq), index_encoder or encoder, progress=False)
    values: dict[str, object] = {
        "admin_api_key": KEY,
        "jobs_dir": tmp_path / "jobs",
        "index_check_interval_s": 60.0,
        **overrides,
    }
    settings = settings_for(model_dir or tmp_path / "unused-model", qdrant, **values)
    app = create_app(settings, encoder_factory=lambda s: encoder)
    with ExitStack() as stack:
        if server is not None:
            stack.enter_context(qdrant_backend(server))
        yield stack.enter_context(serve(app))


def wait_for(client: httpx.Client, job_id: str, done: Callable[[dict[str, Any]], bool]) -> Any:
    deadline = time.monotonic() + 60
    while True:
        r = client.get(f"/admin/reindex/{job_id}", headers=AUTH)
        assert r.status_code == 200, r.text
        job = r.json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.02)


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in ("succeeded", "failed")


def search(client: httpx.Client, query: str, top_k: int = 3) -> Any:
    r = client.post("/search", json={"query": query, "top_k": top_k})
    assert r.status_code == 200, r.text
    return r.json()


def stored(qdrant: Path) -> tuple[str | None, list[str], set[str]]:
    """Opened as a restarted process would: alias target, collections, FAQ ids in faq_v1."""
    index = EmbeddedStore(qdrant)
    ids = set(Entries.load(qdrant / "faq_v1").ids)
    return index.current_collection(), [name for _, name in index.versions()], ids


# --- auth -----------------------------------------------------------------------------------


def test_admin_routes_need_the_admin_key(tmp_path: Path) -> None:
    calls = [
        ("POST", "/admin/reindex", {"source": "default"}),
        ("GET", "/admin/reindex/0123", None),
        ("POST", "/admin/rollback", None),
        ("GET", "/admin/collections", None),
        ("PUT", "/admin/faq/x", {"question": "q", "answer": "a", "lang": "en"}),
        ("DELETE", "/admin/faq/x", None),
    ]
    with admin_app(tmp_path) as client:
        for method, url, body in calls:
            r = client.request(method, url, json=body)
            assert r.status_code == 401, (method, url, r.text)
            assert r.json()["error"]["type"] == "unauthorized"
            wrong = client.request(method, url, json=body, headers={"X-API-Key": "nope"})
            assert wrong.status_code == 401
        # An unauthenticated request with a bad body still gets 401, not a validation hint.
        assert client.post("/admin/reindex", json={"bogus": 1}).status_code == 401
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/admin/collections", headers=bearer).status_code == 200

    with admin_app(tmp_path / "disabled", admin_api_key=None) as client:
        for method, url, body in calls:
            r = client.request(method, url, json=body, headers=AUTH)
            assert r.status_code == 403, (method, url, r.text)
            assert "FAQ_ADMIN_API_KEY" in r.json()["error"]["message"]


# --- the long-lived heap -----------------------------------------------------------------------


def test_the_loaded_service_and_a_reindexed_collection_are_kept_out_of_full_collections(
    tmp_path: Path,
) -> None:
    # app.core.heap: full GC passes over the loaded service were the c=32 tail (bench-100k).
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    with admin_app(tmp_path) as client:
        loaded = gc.get_freeze_count()
        assert loaded > 0
        # Young collections every GEN0_THRESHOLD allocations while the service runs.
        assert gc.get_threshold() == (GEN0_THRESHOLD, *before[1:])
        r = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH)
        assert wait_for(client, r.json()["id"], finished)["state"] == "succeeded"
        # The new collection's snapshot was loaded and frozen with the rest.
        assert gc.get_freeze_count() > loaded
        assert search(client, "how do I cancel my order")["index"] == "faq_v2"
    assert gc.get_freeze_count() == 0  # handed back at shutdown
    assert gc.get_threshold() == before


# --- reindex --------------------------------------------------------------------------------


def test_reindex_inline_items_moves_the_alias_and_search_answers_the_new_content(
    tmp_path: Path,
) -> None:
    with admin_app(tmp_path) as client:
        assert search(client, "how do I cancel my order")["index"] == "faq_v1"
        r = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] in ("queued", "running", "succeeded")
        assert r.headers["location"] == f"/admin/reindex/{job['id']}"
        # Submitted items are on disk before the job runs.
        saved = Path(job["items_file"]).read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["id"] for line in saved] == [i["id"] for i in NEW_ITEMS]

        job = wait_for(client, job["id"], finished)
        assert job["state"] == "succeeded", job
        assert job["source"] == "inline"
        assert job["previous_collection"] == "faq_v1" and job["collection"] == "faq_v2"
        assert job["progress"] == {"done": 3, "total": 3}
        assert job["timings"]["total"] >= job["timings"]["embed"] >= 0
        assert job["gate"] is None and job["error"] is None

        hit = search(client, "redeem my loyalty points")
        assert hit["index"] == "faq_v2"
        assert hit["results"][0]["id"] == "loyalty-points"
        assert {h["id"] for h in search(client, "cancel my order", 10)["results"]} <= {
            i["id"] for i in NEW_ITEMS
        }
        listed = client.get("/admin/collections", headers=AUTH).json()
        assert [(c["name"], c["live"], c["points"]) for c in listed] == [
            ("faq_v1", False, len(SMALL)),
            ("faq_v2", True, 3),
        ]
        assert client.get("/admin/reindex", headers=AUTH).json()[0]["id"] == job["id"]
        assert client.get("/admin/reindex/" + "f" * 32, headers=AUTH).status_code == 404
        assert client.get("/admin/reindex/not-a-job", headers=AUTH).status_code == 404

    # The record outlives the process.
    with admin_app(tmp_path, build=False) as client:
        again = client.get(f"/admin/reindex/{job['id']}", headers=AUTH).json()
        assert again["state"] == "succeeded" and again["collection"] == "faq_v2"


def test_reindex_from_a_configured_source_and_its_errors(tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(i) + "\n" for i in NEW_ITEMS), encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(NEW_ITEMS[0]) + "\n" + '{"id": "x", "question": "q"}\n')
    sources = {"small": small, "broken": broken, "gone": tmp_path / "missing.jsonl"}
    with admin_app(tmp_path, reindex_sources=sources, keep_collections=2) as client:
        r = client.post("/admin/reindex", json={"source": "nope"}, headers=AUTH)
        assert r.status_code == 422
        assert "unknown source 'nope'" in r.json()["error"]["message"]
        assert "broken, gone, small" in r.json()["error"]["message"]

        r = client.post("/admin/reindex", json={"source": "broken"}, headers=AUTH)
        assert r.status_code == 422
        message = r.json()["error"]["message"]
        assert f"{broken}:2:" in message and "answer" in message
        r = client.post("/admin/reindex", json={"source": "gone"}, headers=AUTH)
        assert r.status_code == 422 and "file not found" in r.json()["error"]["message"]

        for expected in ("faq_v2", "faq_v3"):
            r = client.post("/admin/reindex", json={"source": "small"}, headers=AUTH)
            assert r.status_code == 202, r.text
            job = wait_for(client, r.json()["id"], finished)
            assert job["state"] == "succeeded" and job["collection"] == expected
            assert job["source"] == "small" and job["source_path"] == str(small)
            assert job["items_file"] is None  # the source file itself is the record
        # keep_collections=2: the oldest went.
        names = [c["name"] for c in client.get("/admin/collections", headers=AUTH).json()]
        assert names == ["faq_v2", "faq_v3"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, 'give either "items" or "source"'),
        ({"items": NEW_ITEMS, "source": "default"}, 'give either "items" or "source"'),
        ({"items": []}, "items"),
        ({"items": [*NEW_ITEMS, NEW_ITEMS[0], NEW_ITEMS[1]]}, "gift-wrap, loyalty-points"),
        ({"items": [{**NEW_ITEMS[0], "answer": ""}]}, "items.0.answer"),
        ({"items": [{**NEW_ITEMS[0], "colour": "red"}]}, "items.0.colour"),
        ({"source": "default", "force": True}, "force"),
    ],
)
def test_bad_reindex_bodies_are_422(
    body: dict[str, Any], expected: str, admin_client: httpx.Client
) -> None:
    r = admin_client.post("/admin/reindex", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert expected in r.json()["error"]["message"]
    # Nothing started.
    assert admin_client.get("/admin/reindex", headers=AUTH).json() == []


@pytest.fixture(scope="module")
def admin_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with admin_app(tmp_path_factory.mktemp("admin")) as client:
        yield client


def test_a_second_reindex_while_one_runs_is_409_and_the_old_index_keeps_serving(
    tmp_path: Path,
) -> None:
    encoder = BlockingEncoder()
    with admin_app(tmp_path, encoder, index_encoder=FakeEncoder(dim=DIM)) as client:
        encoder.armed = True
        first = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH).json()
        wait_for(client, first["id"], lambda j: j["state"] == "running")

        r = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH)
        assert r.status_code == 409
        assert first["id"] in r.json()["error"]["message"]
        # Writes that the running reindex would overwrite are refused too.
        assert client.post("/admin/rollback", headers=AUTH).status_code == 409
        edit = {"question": "q?", "answer": "a.", "lang": "en"}
        assert client.put("/admin/faq/x", json=edit, headers=AUTH).status_code == 409
        assert client.delete("/admin/faq/order-cancel", headers=AUTH).status_code == 409
        # Zero downtime: the old collection answers while the new one is being written.
        during = search(client, "how do I cancel my order")
        assert during["index"] == "faq_v1" and during["results"][0]["id"] == "order-cancel"

        encoder.release.set()
        job = wait_for(client, first["id"], finished)
        assert job["state"] == "succeeded"
        assert search(client, "gift wrap my parcel")["index"] == "faq_v2"
        second = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH)
        assert second.status_code == 202


def test_shutdown_stops_a_running_reindex_and_keeps_the_old_index(tmp_path: Path) -> None:
    encoder = BlockingEncoder()
    with admin_app(tmp_path, encoder, index_encoder=FakeEncoder(dim=DIM)) as client:
        encoder.armed = True
        job = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH).json()
        wait_for(client, job["id"], lambda j: j["state"] == "running")
        # Let the first batch through once the shutdown has begun.
        threading.Timer(0.3, encoder.release.set).start()
    with admin_app(tmp_path, build=False) as client:
        stopped = client.get(f"/admin/reindex/{job['id']}", headers=AUTH).json()
        assert stopped["state"] == "failed", stopped
        assert stopped["error"] == "interrupted: the service shut down"
        names = [c["name"] for c in client.get("/admin/collections", headers=AUTH).json()]
        assert names == ["faq_v1"]
        assert search(client, "how do I cancel my order")["index"] == "faq_v1"


def test_job_records_are_pruned_to_jobs_keep(tmp_path: Path) -> None:
    store = JobStore(tmp_path, keep=2)
    for n in range(4):
        record = JobRecord(
            id=f"{n:032x}", state="failed", source="inline", created_at=f"2024-01-0{n + 1}"
        )
        store.save(record)
        store.save_items(record.id, [FaqItem.model_validate(NEW_ITEMS[0])])
    running = JobRecord(id="f" * 32, state="running", source="x", created_at="2023-01-01")
    store.save(running)
    store.prune()
    assert [r.id for r in store.all()] == [f"{3:032x}", f"{2:032x}", "f" * 32]
    assert sorted(p.name for p in tmp_path.glob("*.items.jsonl")) == [
        f"{2:032x}.items.jsonl",
        f"{3:032x}.items.jsonl",
    ]
    assert [r.id for r in store.recover()] == ["f" * 32]
    recovered = store.load("f" * 32)
    assert recovered is not None and recovered.finished_at
    assert (recovered.state, recovered.error) == ("failed", INTERRUPTED)


def test_rollback_moves_the_alias_back_and_forward(tmp_path: Path) -> None:
    with admin_app(tmp_path) as client:
        assert client.post("/admin/rollback", headers=AUTH).status_code == 409  # only faq_v1
        job = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH).json()
        assert wait_for(client, job["id"], finished)["state"] == "succeeded"
        assert search(client, "gift wrap my parcel")["results"][0]["id"] == "gift-wrap"

        r = client.post("/admin/rollback", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"previous": "faq_v2", "current": "faq_v1"}
        back = search(client, "how do I cancel my order")
        assert back["index"] == "faq_v1" and back["results"][0]["id"] == "order-cancel"

        r = client.post("/admin/rollback", headers=AUTH)
        assert r.status_code == 409 and "nothing to roll back to" in r.json()["error"]["message"]
        r = client.post("/admin/rollback", json={"collection": "faq_v9"}, headers=AUTH)
        assert r.status_code == 404 and "faq_v1, faq_v2" in r.json()["error"]["message"]
        r = client.post("/admin/rollback", json={"collection": "faq_v1"}, headers=AUTH)
        assert r.status_code == 409 and "already live" in r.json()["error"]["message"]
        r = client.post("/admin/rollback", json={"collection": "faq_v2"}, headers=AUTH)
        assert r.json() == {"previous": "faq_v1", "current": "faq_v2"}
        assert search(client, "gift wrap my parcel")["index"] == "faq_v2"

    # The collection rolled away from is not mistaken for a half-built one at the next start.
    EmbeddedStore(tmp_path / "qdrant").rollback()
    with admin_app(tmp_path, build=False) as client:
        names = [c["name"] for c in client.get("/admin/collections", headers=AUTH).json()]
        assert names == ["faq_v1", "faq_v2"]


@pytest.mark.parametrize("backend", ["embedded", "qdrant"])
def test_put_and_delete_make_a_new_version_and_rollback_undoes_them(
    tmp_path: Path, backend: str
) -> None:
    # An edit writes a new version (the live one with the change) and moves the alias, so a
    # rollback undoes exactly the last edit, and a version a search loaded never changes; on
    # both backends (issue 27, item 10: a Qdrant server once edited the live collection in
    # place, and a rollback went back to the last build, every edit since lost).
    server = QdrantClient(":memory:") if backend == "qdrant" else None
    with admin_app(tmp_path, server=server) as client:
        body = {
            "id": "ignored",
            "question": "Do you sell refurbished phones with warranty?",
            "answer": "Yes, with 12 months warranty.",
            "lang": "EN",
            "tags": ["refurbished"],
        }
        r = client.put("/admin/faq/refurbished-phones", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json() == {
            "id": "refurbished-phones",
            "collection": "faq_v2",
            "created": True,
            "deleted": False,
        }
        top = search(client, "refurbished phones warranty")["results"][0]
        assert (top["id"], top["lang"], top["answer"]) == (
            "refurbished-phones",
            "en",
            "Yes, with 12 months warranty.",
        )

        body["answer"] = "Yes, with 24 months warranty."
        r = client.put("/admin/faq/refurbished-phones", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json()["created"] is False
        hits = search(client, "refurbished phones warranty", 10)["results"]
        assert [h["answer"] for h in hits if h["id"] == "refurbished-phones"] == [
            "Yes, with 24 months warranty."
        ]
        listed = client.get("/admin/collections", headers=AUTH).json()
        assert [c["name"] for c in listed] == ["faq_v1", "faq_v2", "faq_v3"]
        assert listed[-1]["live"] and listed[-1]["points"] == len(SMALL) + 1
        assert listed[-1]["content_hash"] == ""

        r = client.delete("/admin/faq/refurbished-phones", headers=AUTH)
        assert r.status_code == 200 and r.json()["deleted"] is True
        ids = [h["id"] for h in search(client, "refurbished phones warranty", 10)["results"]]
        assert "refurbished-phones" not in ids
        # The rollback restores the version before the delete: the entry as last edited.
        r = client.post("/admin/rollback", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"previous": "faq_v4", "current": "faq_v3"}
        hits = search(client, "refurbished phones warranty", 10)["results"]
        assert [h["answer"] for h in hits if h["id"] == "refurbished-phones"] == [
            "Yes, with 24 months warranty."
        ]
        r = client.post("/admin/rollback", json={"collection": "faq_v4"}, headers=AUTH)
        assert r.status_code == 200
        r = client.delete("/admin/faq/refurbished-phones", headers=AUTH)
        assert r.status_code == 404 and "refurbished-phones" in r.json()["error"]["message"]

        r = client.put("/admin/faq/x", json={"question": "q", "lang": "en"}, headers=AUTH)
        assert r.status_code == 422 and "answer" in r.json()["error"]["message"]
        r = client.put("/admin/faq/" + "x" * 200, json={**body, "id": None}, headers=AUTH)
        assert r.status_code == 422 and "id" in r.json()["error"]["message"]


# --- quality gate (real model) ----------------------------------------------------------------


def test_quality_gate_failure_leaves_the_old_alias_serving(
    tmp_path: Path, real_onnx_dir: Path
) -> None:
    sample = read_faq(SAMPLE_FAQ)
    topics = ("order-cancel", "refund-time", "shipping-cost", "account-delete", "payment-cod")
    subset = [i for i in sample if i.id.split(".")[0] in topics]
    faq = tmp_path / "subset.jsonl"
    faq.write_text("".join(i.model_dump_json() + "\n" for i in subset), encoding="utf-8")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        '{"query": "can I cancel mi pedido", "expected_id": "order-cancel"}\n'
        '{"query": "wie lange dauert der refund", "expected_id": "refund-time", "top_k": 3}\n',
        encoding="utf-8",
    )
    encoder = OnnxEncoder.load(real_onnx_dir)
    without_cancel = [i.model_dump() for i in subset if not i.id.startswith("order-cancel")]
    with admin_app(
        tmp_path, encoder, model_dir=real_onnx_dir, faq=faq, golden_queries=golden
    ) as client:
        r = client.post("/admin/reindex", json={"items": without_cancel}, headers=AUTH)
        job = wait_for(client, r.json()["id"], finished)
        assert job["state"] == "failed", job
        assert "quality gate failed: 1 of 2" in job["error"]
        assert "can I cancel mi pedido" in job["error"]
        results = {g["query"]: g for g in job["gate"]["results"]}
        assert results["can I cancel mi pedido"]["passed"] is False
        assert results["can I cancel mi pedido"]["rank"] is None
        assert len(results["can I cancel mi pedido"]["top_ids"]) == 5  # golden_top_k default
        assert results["wie lange dauert der refund"]["passed"] is True
        assert results["wie lange dauert der refund"]["top_k"] == 3
        assert job["collection"] is None
        # The new collection is gone and the alias never moved.
        names = [c["name"] for c in client.get("/admin/collections", headers=AUTH).json()]
        assert names == ["faq_v1"]
        hit = search(client, "can I cancel mi pedido")
        assert hit["index"] == "faq_v1"
        assert hit["results"][0]["id"].startswith("order-cancel")

        # The same gate lets a good reindex through.
        good = [i.model_dump() for i in subset if not i.id.startswith("payment-cod")]
        r = client.post("/admin/reindex", json={"items": good}, headers=AUTH)
        job = wait_for(client, r.json()["id"], finished)
        assert job["state"] == "succeeded", job
        assert job["gate"]["passed"] is True and job["gate"]["failed"] == 0
        assert job["timings"]["gate"] > 0
        assert search(client, "bisa bayar cash on delivery")["index"] == "faq_v2"


def test_shipped_golden_queries_are_valid() -> None:
    from index_builder.indexing.quality_gate import load_golden

    golden = load_golden(REPO / "data" / "golden.json")
    ids = {i.id for i in read_faq(SAMPLE_FAQ)}
    assert len(golden) >= 15
    assert all(g.expected_id in ids for g in golden)


def test_a_bad_golden_file_stops_startup(tmp_path: Path) -> None:
    from index_builder.indexing.quality_gate import GoldenFileError

    golden = tmp_path / "golden.json"
    golden.write_text('[{"query": "x", "expected_id": "a"}, {"query": "y"}]')
    settings = settings_for(tmp_path, tmp_path / "q", golden_queries=golden)
    with pytest.raises(GoldenFileError, match=r"golden.json entry 2: expected_id: Field required"):
        create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=DIM))


# --- crash safety ---------------------------------------------------------------------------

KILLED_REINDEX = """
import sys, time
from pathlib import Path
from app.services.index_guard import IndexGuard
from app.services.jobs_store import JobStore
from app.services.reindex import AdminService
from tests.fakes import FakeEncoder
from index_builder.faq import read_faq
from index_builder.store import EmbeddedStore

class SlowEncoder(FakeEncoder):
    calls = 0
    def encode_passages(self, texts):
        # Batch n starts only once batch n-1 is stored: say so, then take a while.
        SlowEncoder.calls += 1
        print(f"encoding batch {SlowEncoder.calls}", flush=True)
        time.sleep(0.3)
        return super().encode_passages(texts)

qdrant, jobs, faq = (Path(p) for p in sys.argv[1:4])
encoder = SlowEncoder(dim=384)
index = EmbeddedStore(qdrant)
admin = AdminService(encoder, IndexGuard(index, encoder.fingerprint, 5.0), JobStore(jobs),
                     batch_size=4)
items = [i.model_copy(update={"answer": "new " + i.answer}) for i in read_faq(faq)]
job = admin.submit(items, source="inline")
print(f"job {job.id}", flush=True)
time.sleep(120)
"""


def test_a_reindex_killed_midway_leaves_the_old_index_serving(tmp_path: Path) -> None:
    qdrant = tmp_path / "qdrant"
    faq = tmp_path / "small.jsonl"
    faq.write_text("".join(i.model_dump_json() + "\n" for i in SMALL), encoding="utf-8")
    build_index(qdrant, FakeEncoder(dim=DIM), faq)
    old_ids = {i.id for i in SMALL}
    script = tmp_path / "killed_reindex.py"
    script.write_text(KILLED_REINDEX, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(qdrant), str(tmp_path / "jobs"), str(faq)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )
    job_id = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("job "):
                job_id = line.split()[1]
            if line.strip() == "encoding batch 4":  # batches 1-3 are stored
                break
        else:
            pytest.fail("the reindex process ended early")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and job_id is not None

    # What the kill left: the alias on faq_v1 and a half-built faq_v2.
    index = EmbeddedStore(qdrant)
    assert index.current_collection() == "faq_v1"
    half = {c.name: c for c in index.collections()}["faq_v2"]
    # The embedded store writes a version's rows at the end: killed midway, it holds none.
    assert half.state == "building"

    with admin_app(tmp_path, build=False) as api:
        job = api.get(f"/admin/reindex/{job_id}", headers=AUTH).json()
        assert job["state"] == "failed" and job["error"] == INTERRUPTED
        # What was submitted is still on disk, ready to submit again.
        lines = Path(job["items_file"]).read_text(encoding="utf-8").splitlines()
        kept = [FaqItem.model_validate_json(line) for line in lines]
        assert len(kept) == len(old_ids) and kept[0].answer.startswith("new ")
        hit = search(api, "how do I cancel my order")
        assert hit["index"] == "faq_v1" and not hit["results"][0]["answer"].startswith("new ")
        names = [c["name"] for c in api.get("/admin/collections", headers=AUTH).json()]
        assert names == ["faq_v1"]  # the orphan is gone
        # And the next reindex works and numbers on from there.
        r = api.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH)
        assert wait_for(api, r.json()["id"], finished)["collection"] == "faq_v2"

    # No FAQ of the old index was lost on the way.
    assert stored(qdrant) == ("faq_v2", ["faq_v1", "faq_v2"], old_ids)
