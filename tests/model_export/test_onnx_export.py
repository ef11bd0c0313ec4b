"""ONNX export of a tiny BERT: graph shape, manifest contract, parity guard, int8, atomicity."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

import model_export.onnx_export as onnx_export
from index_builder.model.manifest import MANIFEST_FILE, TOKENIZER_FILE, ModelManifest, sha256_file
from model_export.onnx_export import (
    ExportError,
    ParityError,
    QuantizationError,
    export_onnx,
)


@pytest.fixture(scope="module")
def tiny_onnx_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-export") / "tiny-onnx"
    export_onnx(tiny_bert_dir, out, name="tiny")
    return out


def _torch_embed(model_dir: Path, texts: list[str]) -> tuple[dict[str, Any], NDArray[np.float32]]:
    """Mean pooling + L2 written out independently of the exporter's wrapper."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    vectors = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    feeds = {k: v.numpy() for k, v in enc.items()}
    return feeds, vectors


def _run(path: Path, feeds: dict[str, Any]) -> NDArray[np.float32]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return np.asarray(sess.run(["sentence_embedding"], {n: feeds[n] for n in names})[0])


def test_manifest_describes_the_export(tiny_onnx_dir: Path, tiny_bert_dir: Path) -> None:
    m = ModelManifest.read(tiny_onnx_dir)
    assert m.name == "tiny"
    assert m.source_model == str(tiny_bert_dir)
    assert m.dim == 32
    assert m.max_length == 64  # min(position table, tokenizer limit)
    assert (m.pooling, m.normalize) == ("mean", True)
    assert (m.query_prefix, m.passage_prefix) == ("query: ", "passage: ")
    assert m.variants == {
        "fp32": "model.onnx",
        "int8": "model.int8.onnx",
        "fp16": "model.fp16.onnx",
    }
    assert m.parity_max_abs_diff is not None and m.parity_max_abs_diff <= 1e-4
    assert datetime.fromisoformat(m.created_at).tzinfo is not None
    on_disk = {p.name for p in tiny_onnx_dir.iterdir()} - {MANIFEST_FILE}
    assert set(m.files) == on_disk
    assert {"model.onnx", "model.int8.onnx", "model.fp16.onnx", TOKENIZER_FILE} <= on_disk
    for name, digest in m.files.items():
        assert sha256_file(tiny_onnx_dir / name) == digest, name
    report = json.loads((tiny_onnx_dir / "export_report.json").read_text())
    assert report["parity_max_abs_diff"] == m.parity_max_abs_diff
    assert report["fp16_mean_cosine"] >= 0.99 and report["fp16_min_cosine"] > 0.9
    assert report["fp16_measured_on"] in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_graph_declares_only_the_inputs_it_reads(tiny_onnx_dir: Path, tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    # The tokenizer offers token_type_ids (like any BERT checkpoint); they are all zero for one
    # segment, so the graph must not ask for them.
    assert "token_type_ids" in AutoTokenizer.from_pretrained(tiny_bert_dir).model_input_names
    model = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["sentence_embedding"]
    assert ModelManifest.read(tiny_onnx_dir).inputs == ["input_ids", "attention_mask"]


def test_attention_is_exported_without_sdpa_s_nan_guard(tiny_onnx_dir: Path) -> None:
    # Eager attention: SDPA's decomposition adds IsNaN and Where over every attention score,
    # about a tenth of the int8 model's time at batch 32 (tools.model_speed).
    ops = [n.op_type for n in onnx.load(str(tiny_onnx_dir / "model.onnx")).graph.node]
    layers = ops.count("Softmax")
    assert layers >= 1
    assert "IsNaN" not in ops
    assert ops.count("Where") < layers  # the mask is built once, not guarded per layer


@pytest.mark.parametrize(
    "texts",
    [
        ["hola"],
        ["can i cancel mi pedido", "คำสั่งซื้อของฉันอยู่ที่ไหน ฉันต้องการคืนเงิน", "x"],
        ["where is my order " * 20] * 5,
    ],
    ids=["batch1", "batch3-mixed", "batch5-long"],
)
def test_dynamic_batch_and_sequence(
    tiny_onnx_dir: Path, tiny_bert_dir: Path, texts: list[str]
) -> None:
    feeds, expected = _torch_embed(tiny_bert_dir, texts)
    for variant in ("model.onnx",):
        got = _run(tiny_onnx_dir / variant, feeds)
        assert got.shape == (len(texts), 32)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_variant_is_close(tiny_onnx_dir: Path, tiny_bert_dir: Path) -> None:
    texts = ["where is my order", "dónde está mi pedido", "退款", "barang saya belum sampai"]
    feeds, _ = _torch_embed(tiny_bert_dir, texts)
    fp32 = _run(tiny_onnx_dir / "model.onnx", feeds)
    int8 = _run(tiny_onnx_dir / "model.int8.onnx", feeds)
    cosine = np.sum(fp32 * int8, axis=1)
    assert cosine.min() > 0.99
    model = onnx.load(str(tiny_onnx_dir / "model.int8.onnx"))
    assert any(n.op_type in {"MatMulInteger", "DynamicQuantizeLinear"} for n in model.graph.node)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.value_info, *graph.input, *graph.output]
    }


def test_fp16_variant_keeps_io_types_and_fp32_pooling(
    tiny_onnx_dir: Path, tiny_bert_dir: Path
) -> None:
    model = onnx.load(str(tiny_onnx_dir / "model.fp16.onnx"))
    f32, f16, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64
    # The service feeds int64 ids and reads float32 vectors from every variant.
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [i64, i64]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [f32]
    weights = [t for t in model.graph.initializer if np.prod(t.dims) > 1000]
    assert weights and all(t.data_type == f16 for t in weights)
    onnx.checker.check_model(model, full_check=True)  # sorted, and every type consistent
    # Mean pooling and the L2 norm run in fp32 (no rounding to fp16 between their steps);
    # the encoder layers in fp16.
    types = _elem_types(model)
    producer = {out: n for n in model.graph.node for out in n.output}
    # The sum of masked hidden states (the mask count beside it may stay fp16: exact integers).
    (hidden_sum,) = [
        n
        for n in model.graph.node
        if n.op_type == "ReduceSum" and producer[n.input[0]].op_type == "Mul"
    ]
    norm = next(n for n in model.graph.node if n.op_type == "ReduceL2")
    for node in (hidden_sum, norm):
        assert types[node.input[0]] == f32, node.name
        assert producer[node.input[0]].op_type != "Cast", node.name
    final = producer[model.graph.output[0].name]
    assert final.op_type == "Identity" and producer[final.input[0]].op_type == "Div"
    assert any(types.get(n.output[0]) == f16 for n in model.graph.node if n.op_type == "MatMul")
    texts = ["where is my order", "dónde está mi pedido", "退款", "barang saya belum sampai"]
    feeds, _ = _torch_embed(tiny_bert_dir, texts)
    fp32 = _run(tiny_onnx_dir / "model.onnx", feeds)
    half = _run(tiny_onnx_dir / "model.fp16.onnx", feeds)
    assert half.dtype == np.float32
    assert np.sum(fp32 * half, axis=1).min() > 0.99


def test_fp16_too_far_from_fp32_fails_the_export(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    with pytest.raises(QuantizationError, match="fp16 mean cosine"):
        # No real model reaches a cosine of 1.5: stands in for a conversion that broke it.
        export_onnx(tiny_bert_dir, out, int8=False, fp16_min_cosine=1.5)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _sabotaged_export(real: Any) -> Any:
    """An exporter that writes a graph whose word embeddings are off: the kind of bug (a wrong
    weight mapping, a bad optimiser rewrite) that a parity check exists to catch."""

    def export(wrapper: Any, example: Any, names: Any, path: Path, opset: int) -> None:
        real(wrapper, example, names, path, opset)
        model = onnx.load(str(path))
        biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        weights = onnx.numpy_helper.to_array(biggest)
        noise = np.random.default_rng(0).normal(0.0, 0.5, weights.shape).astype(weights.dtype)
        biggest.CopyFrom(onnx.numpy_helper.from_array(weights + noise, biggest.name))
        onnx.save(model, str(path))

    return export


def test_parity_error_on_a_wrong_graph_leaves_no_model_dir(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "_export_graph", _sabotaged_export(onnx_export._export_graph))
    out = tmp_path / "broken"
    with pytest.raises(ParityError, match="disagree"):
        export_onnx(tiny_bert_dir, out, int8=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left behind either


def test_existing_export_is_kept_unless_overwrite(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        export_onnx(tiny_bert_dir, out, int8=False)
    assert (out / "keep.txt").read_text() == "precious"

    m = export_onnx(tiny_bert_dir, out, int8=False, fp16=False, overwrite=True, max_length=16)
    assert not (out / "keep.txt").exists()
    assert m.variants == {"fp32": "model.onnx"} and m.max_length == 16
    assert ModelManifest.read(out) == m
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_max_length_beyond_the_position_table_is_refused(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="exceeds"):
        export_onnx(tiny_bert_dir, tmp_path / "x", max_length=10_000)
    assert not (tmp_path / "x").exists()


def test_rebuild_variants_remakes_missing_files_from_fp32(
    tiny_onnx_dir: Path, tmp_path: Path
) -> None:
    # A directory that travelled with only its fp32 graph, tokenizer and manifest.
    from index_builder.model.encoder import OnnxEncoder
    from model_export.onnx_export import rebuild_variants

    carried = tmp_path / "carried"
    carried.mkdir()
    original = ModelManifest.read(tiny_onnx_dir)
    for name in (original.variant_file("fp32"), TOKENIZER_FILE):
        (carried / name).write_bytes((tiny_onnx_dir / name).read_bytes())
    # Another onnxruntime version converts to other bytes: the carried hashes of the derived
    # files are then stale, and only the rebuilt files' own hashes can be trusted.
    stale = original.model_copy(deep=True)
    for variant, file in stale.variants.items():
        if variant != "fp32":
            stale.files[file] = "0" * 64
    stale.write(carried)

    assert sorted(rebuild_variants(carried)) == sorted(set(original.variants) - {"fp32"})
    manifest = ModelManifest.read(carried)
    for variant, file in manifest.variants.items():
        assert manifest.files[file] == sha256_file(carried / file), variant
    assert manifest.fingerprint("fp32") == original.fingerprint("fp32")
    # The manifest now vouches for the rebuilt files: the encoder's hash check accepts them,
    # and the int8 vectors stay close to fp32's.
    texts = ["where is my order", "wo ist meine Bestellung"]
    fp32 = OnnxEncoder.load(carried).encode_queries(texts)
    int8 = OnnxEncoder.load(carried, variant="int8").encode_queries(texts)
    assert float(np.min(np.sum(fp32 * int8, axis=1))) > 0.9
    assert rebuild_variants(carried) == []  # nothing missing: nothing rebuilt


def test_cuda_sessions_preload_pip_cuda_libraries(
    tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index_builder.model.encoder import CPU, CUDA, OnnxEncoder

    calls: list[str] = []
    monkeypatch.setattr(ort, "preload_dlls", lambda *a, **k: calls.append("cuda"), raising=False)
    OnnxEncoder.load(tiny_onnx_dir, providers=[CPU])
    assert calls == []  # a CPU session loads no CUDA
    OnnxEncoder.load(tiny_onnx_dir, providers=[CUDA, CPU], allow_cpu_fallback=True)
    assert calls == ["cuda"]
