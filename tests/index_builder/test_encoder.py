"""The runtime encoder: agreement with PyTorch, truncation, batching order, providers, integrity."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from tokenizers import Tokenizer

from index_builder.model.encoder import (
    CPU,
    CUDA,
    Encoder,
    ModelIntegrityError,
    OnnxEncoder,
    ProviderUnavailableError,
    Tokenized,
    TokenizingEncoder,
    resolve_providers,
)
from index_builder.model.manifest import ManifestError, ModelManifest
from tests.fakes import FakeEncoder

TEXTS = [
    "where is my order",
    "can i cancel mi pedido",
    "barang saya belum sampai, where is my order",
    "où est ma commande remboursement",
    "คำสั่งซื้อของฉันอยู่ที่ไหน",
    "我的订单在哪里",
    "",
    "refund " * 12,
]
HAS_CUDA = CUDA in ort.get_available_providers()


@pytest.fixture(scope="module")
def tiny_onnx_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("tiny-encoder") / "tiny-onnx"
    export_onnx(tiny_bert_dir, out, name="tiny")
    return out


@pytest.fixture(scope="module")
def encoder(tiny_onnx_dir: Path) -> OnnxEncoder:
    return OnnxEncoder.load(tiny_onnx_dir)


def _torch_mean_pooled(model_dir: Path, texts: list[str]) -> NDArray[np.float32]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return np.asarray(torch.nn.functional.normalize(pooled, dim=-1).numpy())


def test_matches_pytorch_mean_pooling(encoder: OnnxEncoder, tiny_bert_dir: Path) -> None:
    assert isinstance(encoder, Encoder)
    queries = encoder.encode_queries(TEXTS)
    passages = encoder.encode_passages(TEXTS)
    assert queries.shape == passages.shape == (len(TEXTS), encoder.dim)
    assert queries.dtype == np.float32
    np.testing.assert_allclose(
        queries, _torch_mean_pooled(tiny_bert_dir, [f"query: {t}" for t in TEXTS]), atol=1e-5
    )
    np.testing.assert_allclose(
        passages, _torch_mean_pooled(tiny_bert_dir, [f"passage: {t}" for t in TEXTS]), atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)


def test_over_long_input_is_truncated_not_refused(encoder: OnnxEncoder) -> None:
    long_query = "where is my order " * 200
    result = encoder.encode([long_query, "where is my order"], "query")
    assert result.truncated == [True, False]
    assert result.n_tokens[0] == encoder.max_length
    assert result.n_tokens[1] < encoder.max_length
    assert np.isfinite(result.vectors).all()
    # Truncation keeps the head: a longer tail changes nothing.
    again = encoder.encode(["where is my order " * 400], "query")
    np.testing.assert_allclose(again.vectors[0], result.vectors[0], atol=1e-6)


def test_length_sorted_batches_keep_the_callers_order(tiny_onnx_dir: Path) -> None:
    small_batches = OnnxEncoder.load(tiny_onnx_dir, batch_size=3)
    texts = TEXTS * 2 + ["x", "where is my order " * 30]
    together = small_batches.encode(texts, "passage")
    one_by_one = np.stack([small_batches.encode_passages([t])[0] for t in texts])
    np.testing.assert_allclose(together.vectors, one_by_one, atol=1e-5)
    assert together.n_tokens == [len(e.ids) for e in small_batches.tokenize(texts, "passage")]


def test_empty_batch(encoder: OnnxEncoder) -> None:
    result = encoder.encode([], "query")
    assert result.vectors.shape == (0, encoder.dim)
    assert result.n_tokens == [] and result.truncated == []


class _RecordingSession:
    """Stands in for an InferenceSession whose graph declares token_type_ids as int32."""

    class _Arg:
        def __init__(self, name: str, type_: str = "tensor(int32)") -> None:
            self.name, self.type = name, type_

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.feeds: dict[str, NDArray[Any]] = {}

    def get_inputs(self) -> list[_RecordingSession._Arg]:
        return [self._Arg(n) for n in ("input_ids", "token_type_ids", "attention_mask")]

    def get_outputs(self) -> list[_RecordingSession._Arg]:
        return [self._Arg("sentence_embedding", "tensor(float)")]

    def get_providers(self) -> list[str]:
        return [CPU]

    def run(self, outputs: list[str], feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        self.feeds = feeds
        batch = feeds["input_ids"].shape[0]
        return [np.ones((batch, self.dim), dtype=np.float32) / np.sqrt(self.dim)]


def test_feeds_exactly_the_declared_inputs(tiny_onnx_dir: Path) -> None:
    manifest = ModelManifest.read(tiny_onnx_dir)
    session = _RecordingSession(manifest.dim)
    tok = Tokenizer.from_file(str(tiny_onnx_dir / "tokenizer.json"))
    enc = OnnxEncoder(manifest, session, tok)
    enc.encode(["where is my order", "x"], "query")
    assert set(session.feeds) == {"input_ids", "token_type_ids", "attention_mask"}
    assert all(v.dtype == np.int32 for v in session.feeds.values())
    mask = session.feeds["attention_mask"]
    assert mask.shape[0] == 2 and mask[0].sum() > mask[1].sum()  # padded to the longest

    # And the real tiny graph, which declares two inputs, gets two.
    assert OnnxEncoder.load(tiny_onnx_dir).input_names == ["input_ids", "attention_mask"]


@pytest.mark.skipif(HAS_CUDA, reason="this host has CUDA; the refusal is about hosts without it")
def test_cuda_asked_for_and_not_given(
    tiny_onnx_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        OnnxEncoder.load(tiny_onnx_dir, providers=resolve_providers("cuda"))
    fallback = OnnxEncoder.load(
        tiny_onnx_dir, providers=resolve_providers("cuda"), allow_cpu_fallback=True
    )
    assert fallback.providers == [CPU]
    assert "falling back" in caplog.text or "serving from the CPU" in caplog.text
    assert fallback.encode_queries(["hola"]).shape == (1, fallback.dim)


def test_cpu_sessions_leave_out_the_slow_fusions(
    tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    seen: list[object] = []
    real = ort.InferenceSession

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("disabled_optimizers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    encoder = OnnxEncoder.load(tiny_onnx_dir)
    assert seen == [["SkipLayerNormFusion"]]
    assert encoder.encode_queries(["hola"]).shape == (1, encoder.dim)


SPINNING = "session.intra_op.allow_spinning"


def _spinning(encoder: OnnxEncoder) -> str | None:
    opts = encoder._session.get_session_options()
    try:
        return str(opts.get_session_config_entry(SPINNING))
    except RuntimeError:  # the entry was never set: the runtime's default
        return None


def test_spinning_is_set_only_when_asked(tiny_onnx_dir: Path) -> None:
    assert _spinning(OnnxEncoder.load(tiny_onnx_dir, spinning=False)) == "0"
    assert _spinning(OnnxEncoder.load(tiny_onnx_dir, spinning=True)) == "1"
    assert _spinning(OnnxEncoder.load(tiny_onnx_dir)) is None


def test_the_service_loads_its_model_without_spinning(tiny_onnx_dir: Path) -> None:
    from app.core.config import Settings
    from app.main import load_onnx_encoder

    served = load_onnx_encoder(Settings(model_dir=tiny_onnx_dir))
    assert isinstance(served, OnnxEncoder)
    assert _spinning(served) == "0"


def test_resolve_providers() -> None:
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers("cuda") == [CUDA, CPU]
    assert resolve_providers("auto") == ([CUDA, CPU] if HAS_CUDA else [CPU])


def test_tampered_model_file_is_refused(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx_dir, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"model\.onnx does not match its manifest"):
        OnnxEncoder.load(copy)
    # The untouched int8 variant still loads: the check is per file.
    assert OnnxEncoder.load(copy, variant="int8").fingerprint.startswith("tiny:int8:")
    # An export from before the fp16 variant existed: asking for fp16 says what there is.
    manifest = ModelManifest.read(copy)
    del manifest.variants["fp16"]
    manifest.write(copy)
    with pytest.raises(ManifestError, match=r"no 'fp16' variant \(exported: fp32, int8\)"):
        OnnxEncoder.load(copy, variant="fp16")


def test_fingerprint_depends_on_variant(tiny_onnx_dir: Path, encoder: OnnxEncoder) -> None:
    int8 = OnnxEncoder.load(tiny_onnx_dir, variant="int8")
    assert encoder.fingerprint == ModelManifest.read(tiny_onnx_dir).fingerprint("fp32")
    assert int8.fingerprint != encoder.fingerprint
    cos = np.sum(int8.encode_queries(TEXTS) * encoder.encode_queries(TEXTS), axis=1)
    assert cos.min() > 0.99
    int8.warmup()


def test_fake_encoder_is_deterministic_and_normalised() -> None:
    a, b = FakeEncoder(dim=64), FakeEncoder(dim=64)
    assert isinstance(a, Encoder)
    texts = ["where is my order", "where is my parcel", "reset password", ""]
    va, vb = a.encode_queries(texts), b.encode_queries(texts)
    np.testing.assert_array_equal(va, vb)
    assert va.shape == (4, 64) and va.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-6)
    assert va[0] @ va[1] > va[0] @ va[2]  # shared words, closer vectors
    assert a.fingerprint != FakeEncoder(dim=32).fingerprint
    result = FakeEncoder(dim=8, max_length=3).encode(["one two three four", "one"], "passage")
    assert result.truncated == [True, False] and result.n_tokens == [3, 1]


def test_fp16_serves_on_cpu_with_a_warning(
    tiny_onnx_dir: Path, encoder: OnnxEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="index_builder.model.encoder"):
        half = OnnxEncoder.load(tiny_onnx_dir, variant="fp16", providers=[CPU])
    assert "meant for CUDA" in caplog.text
    assert half.fingerprint.split(":")[1] == "fp16" and half.fingerprint != encoder.fingerprint
    vectors = half.encode_queries(TEXTS)
    assert vectors.dtype == np.float32
    assert np.sum(vectors * encoder.encode_queries(TEXTS), axis=1).min() > 0.99


def test_encode_tokenized_runs_what_tokenize_made(encoder: OnnxEncoder) -> None:
    # The batcher tokenises in the request thread and runs the model later, on tokens pooled
    # from several requests: the split must give exactly what encode() gives.
    assert isinstance(encoder, TokenizingEncoder)
    tokens = encoder.tokenize(TEXTS, "query")
    assert all(isinstance(t, Tokenized) for t in tokens)
    split = encoder.encode_tokenized(tokens)
    whole = encoder.encode(TEXTS, "query")
    np.testing.assert_array_equal(split.vectors, whole.vectors)
    assert split.n_tokens == whole.n_tokens == [len(t.ids) for t in tokens]
    # Pooled from two "requests" in another order: each row is still its own text's vector.
    mixed = encoder.encode_tokenized([tokens[3], tokens[0], tokens[7]])
    np.testing.assert_allclose(mixed.vectors, whole.vectors[[3, 0, 7]], atol=1e-5)


def test_fake_encoder_tokenizes_like_a_tokenizing_encoder() -> None:
    fake = FakeEncoder(dim=16, max_length=3)
    assert isinstance(fake, TokenizingEncoder)
    tokens = fake.tokenize(["one two three four", "one"], "query")
    assert [len(t.ids) for t in tokens] == [3, 1]
    result = fake.encode_tokenized(tokens)
    np.testing.assert_array_equal(result.vectors, fake.encode_queries(["one two three", "one"]))
    assert result.truncated == [True, False]
    from tokenizers import models

    real_tokens = Tokenizer(models.WordLevel({"one": 0}, unk_token="one")).encode("one")
    with pytest.raises(TypeError, match="its own tokens"):
        fake.encode_tokenized([real_tokens])


def test_real_model_int8_tracks_fp32(real_onnx_dir: Path) -> None:
    manifest = ModelManifest.read(real_onnx_dir)
    assert manifest.parity_max_abs_diff is not None and manifest.parity_max_abs_diff <= 1e-4
    assert manifest.dim == 384 and manifest.max_length == 512
    fp32 = OnnxEncoder.load(real_onnx_dir)
    int8 = OnnxEncoder.load(real_onnx_dir, variant="int8")
    sentences = [
        "where is my order",
        "¿dónde está mi pedido?",
        "barang saya belum sampai, where is my order",
        "Wo ist meine Bestellung?",
        "How do I reset my password?",
        "คำสั่งซื้อของฉันอยู่ที่ไหน",
    ]
    a, b = fp32.encode_passages(sentences), int8.encode_passages(sentences)
    assert np.sum(a * b, axis=1).min() > 0.97
    q = fp32.encode_queries(["can I cancel mi pedido"])[0]
    # Same meaning across languages beats a different question in the query's own language.
    assert q @ a[1] > q @ a[4]
