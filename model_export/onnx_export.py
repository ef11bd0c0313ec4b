"""Export a transformers encoder to a self-contained ONNX sentence encoder.

The graph ends with pooling and L2 normalisation, so the service only tokenises, runs the graph
and searches: no pooling code exists twice. An export is accepted only if ONNX Runtime agrees
with PyTorch on a varied probe set (several scripts, short and long inputs, padded batches),
like optimum's `validate_model_outputs`; a wrong graph must never look like a model.

Exporter: the torch.export-based ("dynamo") exporter. In torch 2.13 the TorchScript exporter
(`dynamo=False`) still runs but is deprecated, and it traces the Python control flow of
transformers' attention-mask code with one example (TracerWarnings), which silently freezes
branches that depend on the values of the mask. torch.export either keeps such dynamism or
refuses, and the graph it produces is about half the size. It emits opset 18 natively; asking it
for 17 goes through onnx's version converter, which fails on BERT's Reduce* nodes.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from index_builder.model.manifest import (
    MANIFEST_FILE,
    TOKENIZER_FILE,
    ModelManifest,
    sha256_file,
)
from model_export.reproducible_onnx import strip_build_metadata, strip_file

log = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
FP16_FILE = "model.fp16.onnx"
REPORT_FILE = "export_report.json"
OUTPUT_NAME = "sentence_embedding"
DEFAULT_OPSET = 18

Pooling = Literal["mean", "cls"]

# Probe set for parity and for the int8 report: the product's languages and scripts, a
# code-switched query, near-empty and over-long inputs. Sentences are short on purpose so that
# batches mix very different lengths and most rows carry padding.
PROBE_TEXTS: tuple[str, ...] = (
    "where is my order",
    "can I cancel mi pedido",
    "barang saya belum sampai, where is my order",
    "¿Dónde está mi pedido? Lo pedí hace dos semanas y todavía no ha llegado.",
    "Où est ma commande ? Je voudrais un remboursement.",
    "Wo ist meine Bestellung? Kann ich die Lieferadresse noch ändern?",
    "Siparişim nerede, iade edebilir miyim?",
    "मेरा ऑर्डर कहाँ है? क्या मैं इसे रद्द कर सकता हूँ?",
    "คำสั่งซื้อของฉันอยู่ที่ไหน ฉันต้องการคืนเงิน",
    "我的订单在哪里? 我可以退款吗?",
    "Bagaimana cara menukar barang yang rosak?",
    "refund",
    "",
    "ok",
    "How do I change the payment method for an order that has already shipped but not arrived?",
    "return policy for damaged items " * 8,
)
# Far longer than any model's position table: exercises truncation at max_length.
LONG_TEXT = "my package arrived damaged and I want a refund, " * 120


class ExportError(RuntimeError):
    """The export could not produce a usable model directory."""


class ParityError(ExportError):
    """ONNX Runtime and PyTorch disagree on the exported graph by more than the tolerance."""


class QuantizationError(ExportError):
    """A reduced-precision variant (int8, fp16) is too far from fp32 to be served."""


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    n_texts: int
    n_batches: int


def _usable_positions(config: Any) -> int:
    positions = int(config.max_position_embeddings)
    # RoBERTa-family models number positions from padding_idx + 1, so two rows are never used
    # by real tokens (514 rows -> 512 tokens).
    if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
        positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1
    return positions


def _resolve_max_length(config: Any, tokenizer: Any, requested: int | None) -> int:
    limit = _usable_positions(config)
    tok_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    # transformers uses a huge sentinel (1e30) for "no limit".
    if 0 < tok_limit < 1_000_000:
        limit = min(limit, tok_limit)
    if requested is None:
        return limit
    if requested > limit:
        raise ExportError(f"max_length {requested} exceeds what the model supports ({limit})")
    if requested < 2:
        raise ExportError("max_length must leave room for the special tokens")
    return requested


def _needs_token_type_ids(model: Any, tokenizer: Any, texts: Sequence[str]) -> bool:
    """Whether single-segment inputs carry token types other than 0.

    For BERT-style tokenizers they never do, and BertModel's default for a missing
    `token_type_ids` is a buffer sized from the example input (not dynamic-shape friendly);
    feeding zeros inside the wrapper keeps one input fewer on the wire and in the graph.
    """
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        return False
    enc = tokenizer(list(texts), truncation=True, return_token_type_ids=True)
    types = enc.get("token_type_ids")
    return types is not None and any(any(t != 0 for t in row) for row in types)


def _make_wrapper(model: Any, pooling: Pooling, feed_zero_types: bool, with_types: bool) -> Any:
    import torch

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                # clamp: an all-padding row would divide by zero and poison the batch with NaN.
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)

        def encode(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None,
        ) -> torch.Tensor:
            kwargs: dict[str, torch.Tensor] = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
            }
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            elif feed_zero_types:
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            hidden = self.model(**kwargs).last_hidden_state
            return self._pool(hidden, attention_mask)

    # Two signatures rather than an optional argument: torch.export maps dynamic shapes onto
    # the parameters of forward(), and the graph should declare exactly the inputs it reads.
    class TwoInputs(SentenceEncoder):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encode(input_ids, attention_mask, None)

    class ThreeInputs(SentenceEncoder):
        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            return self.encode(input_ids, attention_mask, token_type_ids)

    return (ThreeInputs() if with_types else TwoInputs()).eval()


def _batches(texts: Sequence[str]) -> list[list[str]]:
    """Probe batches: a single short input, mixed lengths, everything padded together, long."""
    texts = list(texts)
    return [
        texts[:1],
        [texts[12], texts[3], texts[1]],
        texts,
        [LONG_TEXT, texts[0], texts[-1]],
        [LONG_TEXT],
    ]


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, names: Sequence[str]) -> Any:
    enc = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
        return_token_type_ids="token_type_ids" in names,
    )
    return {name: np.ascontiguousarray(enc[name], dtype=np.int64) for name in names}


def _ort_session(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # The same optimisation level as the service, so parity covers the fused graph it runs.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def _ort_embed(session: Any, feeds: dict[str, NDArray[np.int64]]) -> NDArray[np.float32]:
    declared = [i.name for i in session.get_inputs()]
    out = session.run([OUTPUT_NAME], {k: feeds[k] for k in declared})[0]
    return np.asarray(out, dtype=np.float32)


def check_parity(
    wrapper: Any,
    tokenizer: Any,
    onnx_path: Path,
    *,
    input_names: Sequence[str],
    max_length: int,
    atol: float,
    texts: Sequence[str] = PROBE_TEXTS,
) -> ParityReport:
    """Compare the ONNX graph with the PyTorch wrapper; raise ParityError beyond `atol`."""
    import torch

    session = _ort_session(onnx_path)
    worst = 0.0
    batches = _batches(texts)
    for batch in batches:
        feeds = _tokenize(tokenizer, batch, max_length, input_names)
        with torch.inference_mode():
            ref = wrapper(*(torch.from_numpy(feeds[n]) for n in input_names)).numpy()
        got = _ort_embed(session, feeds)
        if got.shape != ref.shape:
            raise ParityError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
        diff = float(np.max(np.abs(got - ref))) if got.size else 0.0
        if not np.isfinite(diff):
            raise ParityError(
                f"non-finite outputs for batch of {len(batch)} (max len {max_length})"
            )
        worst = max(worst, diff)
    n = sum(len(b) for b in batches)
    log.info(
        "parity: max |onnx - torch| = %.3g over %d texts in %d batches", worst, n, len(batches)
    )
    if worst > atol:
        raise ParityError(
            f"ONNX Runtime and PyTorch disagree: max abs diff {worst:.3g} > atol {atol:.3g} "
            f"({onnx_path.name}); the exported graph is not the model"
        )
    return ParityReport(max_abs_diff=worst, n_texts=n, n_batches=len(batches))


class _DropInfoFrom(logging.Filter):
    def __init__(self, path_part: str) -> None:
        super().__init__()
        self.path_part = path_part

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or self.path_part not in record.pathname


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # onnxscript's optimiser logs every rewrite at INFO (hundreds of lines for BERT), which
    # drowns the export's own progress messages when the caller logs at INFO.
    # onnxruntime.quantization logs through the root logger itself (logging.info), so a filter
    # on the root logger drops exactly its records and nobody else's.
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    root = logging.getLogger()
    root_filter = _DropInfoFrom("onnxruntime")
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    root.addFilter(root_filter)
    try:
        with warnings.catch_warnings():
            # Known and harmless in torch 2.13: both dims are named on every input, and a
            # deprecation inside torch's own pytree code.
            warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        root.removeFilter(root_filter)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_graph(
    wrapper: Any,
    example: dict[str, NDArray[np.int64]],
    input_names: Sequence[str],
    path: Path,
    opset: int,
) -> None:
    import torch

    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence")
    args = tuple(torch.from_numpy(example[n]) for n in input_names)
    shapes = {n: {0: batch, 1: seq} for n in input_names}
    with _quiet_exporter():
        program = torch.onnx.export(
            wrapper,
            args,
            input_names=list(input_names),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ExportError("torch.onnx.export returned no program")
    # One self-contained file: the hash in the manifest then covers every weight.
    program.save(str(path), external_data=False)
    # Without the exporter's stack traces (absolute paths of the checkout and the venv), so
    # that two clones exporting the same weights write the same bytes and fingerprint.
    strip_file(path)


def _check_graph(path: Path, input_names: Sequence[str], opset: int) -> None:
    import onnx

    onnx.checker.check_model(str(path))
    model = onnx.load(str(path), load_external_data=False)
    declared = [i.name for i in model.graph.input]
    if declared != list(input_names):
        raise ExportError(f"graph inputs {declared} != expected {list(input_names)}")
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != 2 or any(d.dim_value for d in dims):
            raise ExportError(f"input {inp.name} is not (dynamic batch, dynamic sequence)")
    outputs = [o.name for o in model.graph.output]
    if outputs != [OUTPUT_NAME]:
        raise ExportError(f"graph outputs {outputs} != [{OUTPUT_NAME!r}]")
    # The dynamo exporter falls back to its native opset (with only a log line) when the
    # version converter fails, e.g. 18 -> 17 on BERT; a runtime pinned to the asked opset
    # would then refuse the file.
    got = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:
        raise ExportError(f"asked for opset {opset}, the exporter produced {got}")


def _quantize_int8(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel: per-tensor scales cost about 10 points of top-10 neighbour overlap on
    # MiniLM here (BRIEF, section 3).
    with _quiet_exporter():
        quantize_dynamic(fp32, int8, per_channel=True, weight_type=QuantType.QInt8)
    # The quantiser copies the fp32 graph's metadata; stripped again in case a caller hands it
    # a graph exported elsewhere (rebuild_variants on a carried directory).
    strip_file(int8)


def _pooling_tail(model: Any) -> list[str]:
    """Names of the nodes after the encoder's last LayerNormalization: pooling and L2 norm.

    They sum over up to max_length tokens and square 384 values; kept in fp32 in the fp16
    variant so that the vectors the index compares are not rounded at their last step.
    """
    nodes = list(model.graph.node)
    last_ln = max(
        (i for i, n in enumerate(nodes) if n.op_type == "LayerNormalization"), default=None
    )
    if last_ln is None:
        return []
    reached = set(nodes[last_ln].output)
    tail = []
    for node in nodes[last_ln + 1 :]:  # ONNX graphs are stored in topological order
        if reached.intersection(node.input):
            reached.update(node.output)
            tail.append(node)
    for i, node in enumerate(tail):
        if not node.name:  # node_block_list matches by name
            node.name = f"pooling_tail_{i}"
    return [node.name for node in tail]


def _tidy_fp16(model: Any) -> None:
    """Repair what `convert_float_to_float16` leaves around the nodes it keeps in fp32.

    It casts every blocked node's output to fp16 and the next blocked node's input back to
    fp32, which would round the pooling tail to fp16 between its steps; and it appends those
    casts at the end of the node list, which the ONNX checker refuses (ORT re-sorts silently).
    Round trips fp32 -> fp16 -> fp32 are bypassed here, then the nodes are re-sorted.
    """
    from onnx import TensorProto

    graph = model.graph
    f32 = TensorProto.FLOAT
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input]}
    types.update({t.name: t.data_type for t in graph.initializer})

    def cast_to(node: Any) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((int(a.i) for a in node.attribute if a.name == "to"), None)

    for node in graph.node:
        if cast_to(node) == f32:
            types[node.output[0]] = f32
    producer = {out: node for node in graph.node for out in node.output}
    graph_outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    for node in graph.node:
        if cast_to(node) != f32:
            continue
        to_half = producer.get(node.input[0])
        if to_half is None or cast_to(to_half) != TensorProto.FLOAT16:
            continue
        source = to_half.input[0]
        if types.get(source) != f32:
            continue
        if node.output[0] in graph_outputs:
            # The graph output keeps its name: the round trip becomes an Identity.
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = source
        else:
            rename[node.output[0]] = source
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    kept = [n for n in graph.node if n.output[0] not in rename]
    used = {name for node in kept for name in node.input} | graph_outputs
    kept = [n for n in kept if n.op_type != "Cast" or n.output[0] in used]

    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    ordered: list[Any] = []
    pending = kept
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("fp16 graph has a cycle or an input nothing produces")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for n in ready:
            ordered.append(n)
            available.update(n.output)
    del graph.node[:]
    graph.node.extend(ordered)
    # The converter's type annotations no longer match the bypassed casts; they are optional
    # hints, and the full check below re-infers every type from the nodes.
    del graph.value_info[:]


def _convert_fp16(fp32: Path, fp16: Path, op_block_list: Sequence[str] = ()) -> None:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(fp32))
    tail = _pooling_tail(model)
    with _quiet_exporter():
        converted = convert_float_to_float16(
            model,
            # int64 ids in, float32 vectors out: the service feeds and reads the same dtypes
            # for every variant.
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *op_block_list],
            node_block_list=tail,
        )
    _tidy_fp16(converted)
    onnx.checker.check_model(converted, full_check=True)
    onnx.save(strip_build_metadata(converted), str(fp16))


def _report_providers() -> list[str]:
    import onnxruntime as ort

    # fp16 is computed in fp16 only by CUDA; on a CPU ORT casts most of it back to fp32, so the
    # closeness measured there is mostly the weights' rounding. Measure on CUDA when possible.
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _variant_report(
    prefix: str,
    fp32: Path,
    other: Path,
    tokenizer: Any,
    names: Sequence[str],
    max_length: int,
    k: int = 5,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> dict[str, float]:
    """Closeness of a reduced-precision variant to fp32 on the probe texts."""
    texts = list(PROBE_TEXTS)
    feeds = _tokenize(tokenizer, texts, max_length, names)
    a = _ort_embed(_ort_session(fp32, providers), feeds)
    b = _ort_embed(_ort_session(other, providers), feeds)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    # Neighbour overlap among the probe texts: what retrieval would see.
    k = min(k, len(texts) - 1)
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    top_a = np.argsort(-sa, axis=1)[:, :k]
    top_b = np.argsort(-sb, axis=1)[:, :k]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b, strict=True)])
    return {
        f"{prefix}_mean_cosine": float(np.mean(cos)),
        f"{prefix}_min_cosine": float(np.min(cos)),
        f"{prefix}_top{k}_overlap": float(overlap),
    }


def _save_tokenizer(tokenizer: Any, path: Path, max_length: int) -> None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(
            "the tokenizer has no fast (Rust) backend; the service tokenises with `tokenizers`"
        )
    from tokenizers import Tokenizer

    # A copy, so configuring it leaves the transformers tokenizer untouched.
    tok = Tokenizer.from_str(backend.to_str())
    # Record the serving behaviour in the file itself: truncation at the model's limit and the
    # pad token, so anyone loading tokenizer.json alone pads and truncates like the service.
    tok.enable_truncation(max_length=max_length)
    if tokenizer.pad_token_id is not None:
        tok.enable_padding(pad_id=int(tokenizer.pad_token_id), pad_token=str(tokenizer.pad_token))
    tok.save(str(path))


def _install(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished export into place; an existing export is replaced only if asked."""
    if out_dir.exists():
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        elif overwrite:
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
            return
        else:
            raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True)")
    tmp.rename(out_dir)


def export_onnx(
    model_dir: Path,
    out_dir: Path,
    *,
    name: str | None = None,
    max_length: int | None = None,
    int8: bool = True,
    atol: float = 1e-4,
    opset: int = DEFAULT_OPSET,
    pooling: Pooling = "mean",
    query_prefix: str = "query: ",
    passage_prefix: str = "passage: ",
    overwrite: bool = False,
    int8_min_cosine: float = 0.9,
    fp16: bool = True,
    fp16_min_cosine: float = 0.99,
    fp16_op_block_list: Sequence[str] = (),
) -> ModelManifest:
    """Export `model_dir` (any transformers encoder) into `out_dir` and return its manifest.

    `out_dir` receives model.onnx (+ model.int8.onnx, model.fp16.onnx), tokenizer.json,
    export_report.json and manifest.json. The fp16 variant (for CUDA) keeps int64 inputs and
    float32 outputs, and the pooling + normalisation tail in fp32; `fp16_op_block_list` keeps
    more op types in fp32 if its cosine to fp32 is poor.

    Everything is built in a temporary sibling directory and renamed into place at the end, so
    a failure (ParityError included) never leaves a directory with a manifest.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    if pooling not in ("mean", "cls"):
        raise ExportError(f"unknown pooling {pooling!r}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True)")
    started = time.perf_counter()
    name = name or model_dir.name

    log.info("loading %s", model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Eager attention: the classic matmul, mask add, softmax, matmul. The default (SDPA)
    # exports a decomposition that also runs IsNaN and Where over every (batch, head, token,
    # token) score, about 10% of the int8 model's time at batch 32 on the CPU (`python -m
    # tools.model_speed`); the math is the same, and the parity check below holds it.
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    max_len = _resolve_max_length(model.config, tokenizer, max_length)
    with_types = _needs_token_type_ids(model, tokenizer, PROBE_TEXTS)
    feed_zero_types = not with_types and "token_type_ids" in (
        inspect.signature(model.forward).parameters
    )
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])
    wrapper = _make_wrapper(model, pooling, feed_zero_types, with_types)
    dim = int(model.config.hidden_size)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        fp32_path = tmp / FP32_FILE
        # A padded batch of different lengths as the example: the graph must keep the mask path.
        example = _tokenize(tokenizer, list(PROBE_TEXTS[:3]), max_len, input_names)
        log.info(
            "exporting %s (dim %d, max_length %d, inputs %s, opset %d)",
            name, dim, max_len, input_names, opset,
        )  # fmt: skip
        t0 = time.perf_counter()
        _export_graph(wrapper, example, input_names, fp32_path, opset)
        export_s = time.perf_counter() - t0
        _check_graph(fp32_path, input_names, opset)
        parity = check_parity(
            wrapper, tokenizer, fp32_path, input_names=input_names, max_length=max_len, atol=atol
        )
        report: dict[str, Any] = {
            "torch_export_s": round(export_s, 2),
            "parity_max_abs_diff": parity.max_abs_diff,
            "parity_texts": parity.n_texts,
            "atol": atol,
            "opset": opset,
            "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
        }
        variants = {"fp32": FP32_FILE}

        def add_variant(
            name: str, file: str, min_cosine: float, remedy: str, providers: Sequence[str]
        ) -> None:
            """Measure the variant against fp32 on the probe texts; refuse it when too far."""
            quality = _variant_report(
                name, fp32_path, tmp / file, tokenizer, input_names, max_len, providers=providers
            )
            shown = ", ".join(f"{k}={v:.5f}" for k, v in quality.items())
            log.info("%s vs fp32 on %s: %s", name, providers[0], shown)
            mean = quality[f"{name}_mean_cosine"]
            if mean < min_cosine:
                raise QuantizationError(
                    f"{name} mean cosine to fp32 {mean:.4f} < {min_cosine}: {remedy}"
                )
            report.update(quality)
            variants[name] = file

        if int8:
            log.info("quantising to int8 (dynamic, per-channel)")
            _quantize_int8(fp32_path, tmp / INT8_FILE)
            cpu = ["CPUExecutionProvider"]
            add_variant("int8", INT8_FILE, int8_min_cosine, "the quantised model is broken", cpu)
        if fp16:
            log.info("converting to fp16 (pooling and normalisation kept in fp32)")
            _convert_fp16(fp32_path, tmp / FP16_FILE, fp16_op_block_list)
            providers = _report_providers()
            remedy = "keep more ops in fp32 (fp16_op_block_list)"
            add_variant("fp16", FP16_FILE, fp16_min_cosine, remedy, providers)
            report["fp16_measured_on"] = providers[0]

        _save_tokenizer(tokenizer, tmp / TOKENIZER_FILE, max_len)
        report["total_s"] = round(time.perf_counter() - started, 2)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.name != MANIFEST_FILE}
        manifest = ModelManifest(
            name=name,
            source_model=str(model_dir),
            dim=dim,
            pooling=pooling,
            normalize=True,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            max_length=max_len,
            inputs=input_names,
            output=OUTPUT_NAME,
            variants=variants,
            files=files,
            parity_max_abs_diff=parity.max_abs_diff,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        # The manifest is written last: its presence is what marks a directory as a model.
        manifest.write(tmp)
        # mkdtemp makes the directory private; the service often runs as another user.
        tmp.chmod(0o755)
        _install(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "exported %s to %s in %.1f s (%s)",
        name, out_dir, time.perf_counter() - started, manifest.fingerprint("fp32"),
    )  # fmt: skip
    return manifest


def rebuild_variants(out_dir: Path, fp16_op_block_list: Sequence[str] = ()) -> list[str]:
    """Make the int8/fp16 files a manifest lists but its directory lacks, from its fp32 graph.

    A model directory can travel without its derived variants (to a machine that takes only
    so many bytes per transfer, say): the fp32 graph and the tokenizer are the model, the rest
    is made from them the way `export_onnx` makes it. The manifest gets the new files' hashes,
    so the fingerprints of the rebuilt variants change where the converter's output differs
    (another onnxruntime version); fp32's stays. Returns the variants rebuilt.
    """
    manifest = ModelManifest.read(out_dir)
    fp32 = out_dir / manifest.variant_file("fp32")
    rebuilt: list[str] = []
    for variant, file in manifest.variants.items():
        target = out_dir / file
        if variant == "fp32" or target.is_file():
            continue
        log.info("rebuilding the %s variant from %s", variant, fp32.name)
        if variant == "int8":
            _quantize_int8(fp32, target)
        elif variant == "fp16":
            _convert_fp16(fp32, target, fp16_op_block_list)
        else:
            raise ValueError(f"{out_dir}: no rule to rebuild variant {variant!r}")
        manifest.files[file] = sha256_file(target)
        rebuilt.append(variant)
    if rebuilt:
        manifest.write(out_dir)
    return rebuilt


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m model_export.onnx_export MODEL_DIR OUT_DIR [--name N]`: a thin debug entry."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-fp16", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    export_onnx(
        args.model_dir,
        args.out_dir,
        name=args.name,
        max_length=args.max_length,
        int8=not args.no_int8,
        fp16=not args.no_fp16,
        overwrite=args.overwrite,
    )


if __name__ == "__main__":
    main()
