"""Sentence encoders for the service and the indexer: ONNX Runtime + `tokenizers`, no torch.

`OnnxEncoder` serves a directory written by `model_export.onnx_export` (see `manifest.py`): the
graph already pools and normalises, so encoding is tokenise -> pad -> run.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from index_builder.model.manifest import TOKENIZER_FILE, ManifestError, ModelManifest, sha256_file

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

log = logging.getLogger(__name__)

Kind = Literal["query", "passage"]
Device = Literal["auto", "cpu", "cuda"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ProviderUnavailableError(RuntimeError):
    """An execution provider was asked for (CUDA) and ONNX Runtime did not give it."""


class ModelIntegrityError(ManifestError):
    """A model file's bytes differ from the hash its manifest records."""


@dataclass
class EncodeResult:
    """Vectors (rows L2-normalised, shape (n, dim)) plus what tokenisation did to each input."""

    vectors: NDArray[np.float32]
    n_tokens: list[int]
    truncated: list[bool]


@runtime_checkable
class Encoder(Protocol):
    """What the service and the indexer need from a sentence encoder; queries and passages are
    separate calls because asymmetric models such as e5 prefix them differently."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_length(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Identity of the vectors; an index built with another fingerprint is refused."""
        ...

    def encode(self, texts: Sequence[str], kind: Kind) -> EncodeResult: ...

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


@runtime_checkable
class Tokenized(Protocol):
    """One tokenised text: what a `tokenizers.Encoding` offers and the batcher reads."""

    @property
    def ids(self) -> list[int]: ...

    @property
    def overflowing(self) -> list[Any]: ...


@runtime_checkable
class TokenizingEncoder(Encoder, Protocol):
    """An encoder whose tokenisation and model run are separate steps: the batcher tokenises in
    the request thread and groups requests by their token counts."""

    def tokenize(self, texts: Sequence[str], kind: Kind) -> Sequence[Tokenized]: ...

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult: ...


def resolve_providers(device: Device) -> list[str]:
    """Execution providers for a device setting, in ONNX Runtime's order of preference. `cuda`
    asks for CUDA even where this build lacks it, so loading fails loudly, not on the CPU."""
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        return [CUDA, CPU]
    if device == "auto":
        import onnxruntime as ort

        return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]
    raise ValueError(f"unknown device {device!r} (auto, cpu or cuda)")


def cpu_disabled_optimizers() -> list[str]:
    """ONNX Runtime graph fusions left out on the CPU: the fused SkipLayerNormalization CPU
    kernel is slower than the Add and LayerNormalization it replaces (`python -m
    tools.model_speed` profiles it). CUDA keeps it."""
    return ["SkipLayerNormFusion"]


def _check_file(model_dir: Path, manifest: ModelManifest, file_name: str) -> Path:
    path = model_dir / file_name
    if not path.is_file():
        raise ManifestError(f"{path} is listed in the manifest but missing")
    expected = manifest.files.get(file_name)
    if expected is None:
        raise ManifestError(f"{model_dir / 'manifest.json'} records no hash for {file_name}")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{path} does not match its manifest (sha256 {actual[:12]}..., manifest says "
            f"{expected[:12]}...): the file was modified or the export is incomplete; re-export"
        )
    return path


def _pad_id(tokenizer: Tokenizer) -> int:
    padding = tokenizer.padding
    if padding is not None:
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    # Any valid id works: padded positions are masked out of attention and pooling.
    return 0


class OnnxEncoder:
    """An exported model served with ONNX Runtime; thread-safe (ORT's `run` is)."""

    def __init__(
        self,
        manifest: ModelManifest,
        session: Any,
        tokenizer: Tokenizer,
        *,
        variant: str = "fp32",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.manifest = manifest
        self.variant = variant
        self.batch_size = batch_size
        self._session = session
        # `index_builder.store.lexical` reads its subword ids too.
        self.tokenizer = tokenizer
        # Padding is done here, per sorted chunk; the tokenizer only truncates.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=manifest.max_length)
        self._pad_id = _pad_id(tokenizer)

        self._inputs: list[tuple[str, type[np.integer[Any]]]] = []
        for inp in session.get_inputs():
            if inp.name not in KNOWN_INPUTS:
                raise ManifestError(
                    f"model {manifest.name!r} declares input {inp.name!r}; "
                    f"this encoder can feed only {', '.join(KNOWN_INPUTS)}"
                )
            dtype = np.int32 if inp.type == "tensor(int32)" else np.int64
            self._inputs.append((inp.name, dtype))
        outputs = [o.name for o in session.get_outputs()]
        self._output = manifest.output if manifest.output in outputs else outputs[0]
        self.name = manifest.name
        self.dim = manifest.dim
        self.max_length = manifest.max_length
        self.fingerprint = manifest.fingerprint(variant)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        variant: str = "fp32",
        providers: Sequence[str] = (CPU,),
        allow_cpu_fallback: bool = False,
        intra_op_threads: int | None = None,
        spinning: bool | None = None,
        batch_size: int = 32,
    ) -> OnnxEncoder:
        """Open an exported model directory, verifying its files against the manifest.

        `spinning`: whether ONNX Runtime's pool threads spin-wait between operators (None: the
        runtime's default, on); off, they leave a few cores to HTTP, tokenising and the search.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        manifest = ModelManifest.read(model_dir)
        onnx_path = _check_file(model_dir, manifest, manifest.variant_file(variant))
        tokenizer_path = _check_file(model_dir, manifest, TOKENIZER_FILE)

        opts = _session_options(ort, intra_op_threads, spinning)
        requested = list(providers) or [CPU]
        if CUDA in requested and hasattr(ort, "preload_dlls"):
            # Loads the CUDA libraries pip packages brought (off the loader's path); on a failure
            # the session's own error below names the missing one.
            try:
                ort.preload_dlls()
            except Exception as exc:
                log.debug("onnxruntime.preload_dlls failed: %s", exc)
        disabled = cpu_disabled_optimizers() if CUDA not in requested else []
        try:
            with warnings.catch_warnings():
                # ORT warns and drops a provider it lacks; the check below raises or logs it once.
                warnings.filterwarnings("ignore", message=r"Specified provider .* is not in")
                session = ort.InferenceSession(
                    str(onnx_path), opts, providers=requested, disabled_optimizers=disabled
                )
        except Exception as exc:
            # onnxruntime-gpu raises here when CUDA/cuDNN libraries are missing or broken.
            if requested == [CPU]:
                raise
            if not allow_cpu_fallback:
                raise ProviderUnavailableError(
                    f"could not create an ONNX Runtime session with {requested}: {exc}"
                ) from exc
            log.warning("providers %s failed (%s); falling back to the CPU", requested, exc)
            session = ort.InferenceSession(
                str(onnx_path), opts, providers=[CPU], disabled_optimizers=cpu_disabled_optimizers()
            )

        got = list(session.get_providers())
        missing = [p for p in requested if p != CPU and p not in got]
        if missing:
            available = ", ".join(ort.get_available_providers())
            message = (
                f"asked for {', '.join(missing)} but ONNX Runtime gave {', '.join(got)} "
                f"(available in this install: {available}); install onnxruntime-gpu with its "
                "CUDA libraries, or set device=cpu"
            )
            if not allow_cpu_fallback:
                raise ProviderUnavailableError(message)
            log.warning("%s; serving from the CPU because the fallback is allowed", message)

        if variant == "fp16" and CUDA not in got:
            # It works: ORT computes the fp16 graph in fp32 on the CPU, at about fp32's speed.
            log.warning(
                "the fp16 variant is meant for CUDA; on %s ONNX Runtime runs it through fp32 "
                "casts, no faster than the fp32 variant",
                ", ".join(got),
            )
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        encoder = cls(manifest, session, tokenizer, variant=variant, batch_size=batch_size)
        log.info("loaded %s from %s on %s", encoder.fingerprint, model_dir, ", ".join(got))
        return encoder

    @property
    def providers(self) -> list[str]:
        """The providers the session really runs on (not the ones asked for)."""
        return [] if self._session is None else list(self._session.get_providers())

    @property
    def input_names(self) -> list[str]:
        return [name for name, _ in self._inputs]

    def tokenize(self, texts: Sequence[str], kind: Kind) -> list[Encoding]:
        """Prefixed and truncated encodings (special tokens included), without padding."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        prefix = self.manifest.query_prefix if kind == "query" else self.manifest.passage_prefix
        return list(self.tokenizer.encode_batch([prefix + t for t in texts]))

    def _run(self, encodings: Sequence[Encoding]) -> NDArray[np.float32]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._inputs}
        out = self._session.run([self._output], feeds)[0]
        return np.asarray(out, dtype=np.float32)

    def encode(self, texts: Sequence[str], kind: Kind) -> EncodeResult:
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not a single string")
        return self.encode_tokenized(self.tokenize(texts, kind))

    def encode_tokenized(self, encodings: Sequence[Encoding]) -> EncodeResult:
        """Run the model on encodings from `tokenize` (padded here, per chunk)."""
        vectors = np.empty((len(encodings), self.dim), dtype=np.float32)
        # Longest first: each chunk pads to a similar length, the slowest (or an OOM) comes first.
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors[chunk] = self._run([encodings[i] for i in chunk])
        return EncodeResult(
            vectors=vectors,
            n_tokens=[len(e.ids) for e in encodings],
            truncated=[len(e.overflowing) > 0 for e in encodings],
        )

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.encode(texts, "query").vectors

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.encode(texts, "passage").vectors

    def warmup(self) -> None:
        """Run the shapes the service will see, so the first request does not pay for them."""
        self.encode(["warm up"], "query")
        self.encode(["warm up", " ".join(["warm"] * self.max_length)], "passage")

    def close(self) -> None:
        # ORT frees the session with the object; dropping the reference is all there is to do.
        self._session = None

    def __repr__(self) -> str:
        return f"OnnxEncoder({self.fingerprint!r}, providers={self.providers})"


def _session_options(ort: Any, intra_op_threads: int | None, spinning: bool | None) -> Any:
    """Every graph optimisation; the intra-op threads and spinning when given; warnings off."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        opts.intra_op_num_threads = intra_op_threads
    if spinning is not None:
        for pool in ("intra_op", "inter_op"):
            opts.add_session_config_entry(f"session.{pool}.allow_spinning", str(int(spinning)))
    # ORT warns per node it leaves on the CPU under CUDA; `load` checks what matters.
    opts.log_severity_level = 3
    return opts
