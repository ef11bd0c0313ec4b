"""POST /v1/embeddings, GET /v1/models and GET /info, and the lean response path.

Most tests run on the fake encoder (it records which prefix kind each text got); one runs on the
real exported e5 model, where `input_type` must give exactly the encoder's `query: ` and
`passage: ` vectors.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.api.responses import OrjsonResponse
from app.main import create_app
from index_builder.model.encoder import EncodeResult, Kind, OnnxEncoder, Tokenized
from tests.app.conftest import SAMPLE_FAQ, build_index, serve, settings_for
from tests.fakes import FakeEncoder, FakeTokens

KEY = "s3arch"
AUTH = {"X-API-Key": KEY}
DIM = 384
ENTRIES = 12


class RecordingEncoder(FakeEncoder):
    """The fake encoder, noting the kind of every text it encodes."""

    def __init__(self) -> None:
        super().__init__(dim=DIM)
        self.kinds: list[tuple[str, Kind]] = []
        self.threads: set[str] = set()

    def tokenize(self, texts: Sequence[str], kind: Kind) -> list[FakeTokens]:
        self.kinds.extend((t, kind) for t in texts)
        return super().tokenize(texts, kind)

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult:
        self.threads.add(threading.current_thread().name)
        return super().encode_tokenized(encodings)


@pytest.fixture(scope="module")
def encoder() -> RecordingEncoder:
    return RecordingEncoder()


@pytest.fixture(scope="module")
def client(
    encoder: RecordingEncoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    directory = tmp_path_factory.mktemp("openai")
    faq = directory / "faq.jsonl"
    faq.write_text("\n".join(SAMPLE_FAQ.read_text().splitlines()[:ENTRIES]) + "\n")
    build_index(directory / "qdrant", FakeEncoder(dim=DIM), faq)
    settings = settings_for(
        directory / "unused-model",
        directory / "qdrant",
        search_api_key=KEY,
        search_batch_max_queries=4,
        max_query_chars=50,
    )
    with serve(create_app(settings, encoder_factory=lambda s: encoder)) as c:
        yield c


def _embed(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/embeddings", json={"model": "fake", **body}, headers=AUTH)


def _fake(texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return FakeEncoder(dim=DIM).encode(texts, "query").vectors


def test_embeddings_are_shaped_like_openais(client: httpx.Client) -> None:
    texts = ["where is my order", "can I pay with PayPal"]
    r = _embed(client, input=texts)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "fake"
    assert [d["object"] for d in body["data"]] == ["embedding", "embedding"]
    assert [d["index"] for d in body["data"]] == [0, 1]
    vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(vectors, _fake(texts), atol=1e-6)
    # The fake encoder's tokens are words: 4 + 5.
    assert body["usage"] == {"prompt_tokens": 9, "total_tokens": 9}


def test_one_string_and_base64(client: httpx.Client) -> None:
    plain = _embed(client, input="where is my order").json()["data"][0]["embedding"]
    packed = _embed(client, input="where is my order", encoding_format="base64").json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    decoded = np.frombuffer(raw, dtype="<f4")
    assert decoded.shape == (DIM,)
    np.testing.assert_allclose(decoded, np.array(plain, dtype=np.float32), atol=0)


def test_input_type_picks_the_prefix_kind(client: httpx.Client, encoder: RecordingEncoder) -> None:
    encoder.kinds.clear()
    assert _embed(client, input="a question").status_code == 200
    assert _embed(client, input=["a document"], input_type="passage").status_code == 200
    assert _embed(client, input="another", input_type="query").status_code == 200
    assert encoder.kinds == [
        ("a question", "query"),
        ("a document", "passage"),
        ("another", "query"),
    ]


def test_texts_are_encoded_on_the_inference_thread(
    client: httpx.Client, encoder: RecordingEncoder
) -> None:
    # The inference worker owns the model: a request thread running it would race the batches.
    encoder.threads.clear()
    assert _embed(client, input=["one", "two"], input_type="passage").status_code == 200
    assert encoder.threads == {"faq-inference"}


def test_the_model_is_named_by_name_or_fingerprint(client: httpx.Client) -> None:
    fingerprint = FakeEncoder(dim=DIM).fingerprint
    assert _embed(client, input="x", model=fingerprint).status_code == 200
    r = _embed(client, input="x", model="text-embedding-3-small")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert "fake" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"input": ["a", "b", "c", "d", "e"]},  # search_batch_max_queries=4 here
        {"input": []},
        {"input": ""},
        {"input": ["ok", ""]},
        {"input": [1, 2]},
        {"input": "x", "encoding_format": "int8"},
        {"input": "x", "input_type": "document"},
        {"input": "x", "dimensions": 128},
    ],
)
def test_limits_and_bad_bodies_are_422(client: httpx.Client, body: dict[str, Any]) -> None:
    r = _embed(client, **body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "validation_error"


class SlowEncoder(FakeEncoder):
    """The fake encoder taking `seconds` per model run, as a busy model does."""

    def __init__(self, seconds: float) -> None:
        super().__init__(dim=DIM)
        self.seconds = seconds

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult:
        time.sleep(self.seconds)
        return super().encode_tokenized(encodings)


def test_an_embeddings_flood_is_refused_by_the_real_queue_and_deadline(tmp_path: Path) -> None:
    """Embeddings go through the inference worker's bounded queue and deadline, as searches
    do: a flood gets 429 (queue full, with Retry-After) or 503 (deadline), and no call waits
    much past the deadline, whereas model jobs without a bound all waited their turn."""
    build_index(tmp_path / "index", FakeEncoder(dim=DIM))
    settings = settings_for(
        tmp_path / "unused-model",
        tmp_path / "index",
        batch_queue_size=16,
        batch_deadline_s=0.5,
        batch_max_size=8,
    )
    encoder = SlowEncoder(0.1)
    with serve(create_app(settings, encoder_factory=lambda s: encoder)) as client:
        body = {"model": "fake", "input": [f"text {i}" for i in range(8)]}

        def call(_: int) -> tuple[int, float, str | None]:
            t0 = time.perf_counter()
            r = client.post("/v1/embeddings", json=body)
            return r.status_code, time.perf_counter() - t0, r.headers.get("retry-after")

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(call, range(20)))
    statuses = [s for s, _, _ in results]
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses.count(429) >= 5, statuses  # 20 x 8 texts, a queue of 16
    assert all(retry for s, _, retry in results if s == 429)
    assert 200 in statuses
    # Deadline 0.5 s, plus at most one model run in progress and HTTP: nobody waits for the
    # whole flood (20 x 8 texts at 0.1 s per 8 would be 2 s for the last one).
    assert max(t for _, t, _ in results) < 1.2, results


def test_long_texts_are_cut_like_queries(client: httpx.Client) -> None:
    long = "refund " * 10 + "paypal " * 20  # 210 characters; max_query_chars=50 here
    r = _embed(client, input=long)
    got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
    np.testing.assert_allclose(got, _fake([long[:50]])[0], atol=1e-6)


def test_the_search_key_guards_every_route(client: httpx.Client) -> None:
    body = {"model": "fake", "input": "x"}
    assert client.post("/v1/embeddings", json=body).status_code == 401
    assert client.get("/v1/models").status_code == 401
    assert client.get("/info").status_code == 401
    # OpenAI clients send the key as a bearer token.
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/v1/embeddings", json=body, headers=bearer).status_code == 200
    assert client.get("/v1/models", headers=bearer).status_code == 200


def test_models_lists_the_served_encoder(client: httpx.Client) -> None:
    body = client.get("/v1/models", headers=AUTH).json()
    assert body["object"] == "list"
    assert body["data"] == [
        {"id": "fake", "object": "model", "created": 0, "owned_by": "cs-faq-search"}
    ]


def test_a_model_is_retrieved_by_name_or_fingerprint(client: httpx.Client) -> None:
    card = client.get("/v1/models/fake", headers=AUTH).json()
    assert card == client.get("/v1/models", headers=AUTH).json()["data"][0]
    fingerprint = FakeEncoder(dim=DIM).fingerprint
    assert client.get(f"/v1/models/{fingerprint}", headers=AUTH).json() == card
    r = client.get("/v1/models/text-embedding-3-small", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_info_names_model_variant_provider_and_index(client: httpx.Client) -> None:
    body = client.get("/info", headers=AUTH).json()
    fake = FakeEncoder(dim=DIM)
    assert body["model"] == {
        "name": "fake",
        "fingerprint": fake.fingerprint,
        "variant": "fp32",
        "providers": ["CPUExecutionProvider"],
        "dim": DIM,
        "max_length": fake.max_length,
    }
    assert body["index"] == {
        "alias": "faq",
        "collection": "faq_v1",
        "points": ENTRIES,
        "problem": None,
    }
    assert body["version"] == "0.1.0"


# --- the lean response path ------------------------------------------------------------------


def test_responses_skip_fastapis_second_validation_and_are_written_by_orjson(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing

    async def no_second_pass(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the response went through FastAPI's response validation")

    rendered: list[int] = []
    render = OrjsonResponse.render

    def counting_render(self: OrjsonResponse, content: Any) -> bytes:
        rendered.append(1)
        return render(self, content)

    monkeypatch.setattr(fastapi.routing, "serialize_response", no_second_pass)
    monkeypatch.setattr(OrjsonResponse, "render", counting_render)
    calls = [
        client.post("/search", json={"query": "where is my order"}, headers=AUTH),
        client.post("/search/batch", json={"queries": [{"query": "refund"}]}, headers=AUTH),
        _embed(client, input="where is my order"),
        client.get("/v1/models", headers=AUTH),
        client.get("/info", headers=AUTH),
        client.get("/health/ready"),
        client.get("/health/live"),
    ]
    assert [r.status_code for r in calls] == [200] * len(calls), [r.text for r in calls]
    assert len(rendered) == len(calls)


# --- the real model --------------------------------------------------------------------------


def test_input_type_gives_the_e5_query_and_passage_vectors(
    api: httpx.Client, real_onnx_dir: Path
) -> None:
    text = "can I cancel mi pedido"
    model = api.get("/v1/models").json()["data"][0]["id"]
    encoder = OnnxEncoder.load(real_onnx_dir)
    got = {}
    for kind in ("query", "passage"):
        r = api.post("/v1/embeddings", json={"model": model, "input": text, "input_type": kind})
        assert r.status_code == 200, r.text
        got[kind] = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
        expected = encoder.encode([text], kind)
        np.testing.assert_allclose(got[kind], expected.vectors[0], atol=1e-5)
        assert r.json()["usage"]["prompt_tokens"] == expected.n_tokens[0]
    # The prefixes differ, so do the vectors.
    assert float(got["query"] @ got["passage"]) < 0.999
    info = api.get("/info").json()
    assert info["model"]["name"] == model and info["model"]["variant"] == "fp32"
