"""The contract between an exported model directory and everything that serves it.

`model_export` writes `manifest.json` beside `model.onnx`; `index_builder` and `app` read it and
never look at torch or transformers. The fingerprint is what an index records, so that a service
can refuse vectors that another model (or another quantisation of the same model) produced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"


class ManifestError(RuntimeError):
    """The model directory is missing, incomplete or inconsistent with its manifest."""


class AbstainCalibration(BaseModel):
    """When this model's best answer is too weak to show (`index_builder.answers.calibration`
    has the rule): written by `faq-model calibrate`."""

    min_score: float
    offtopic_weight: float = Field(ge=0.0)
    anchors: list[str] = Field(default_factory=list)
    refusal_budget: float = Field(ge=0.0, le=1.0)
    answerable: int = Field(ge=0, description="Answerable dev queries calibrated on.")
    offtopic: int = Field(ge=0, description="Off-topic dev queries calibrated on.")
    dev_refused: float = Field(description="Share of answerable dev queries refused.")
    dev_abstained: float = Field(description="Share of off-topic dev queries abstained on.")
    faq_hash: str = Field(description="content_hash of the FAQ whose scores were calibrated.")
    variant: str = Field("fp32", description="The model variant whose scores were calibrated.")
    matched_to: str = Field(
        "",
        description="The variant whose decisions this threshold reproduces (as large a share of "
        "the dev queries below it as below that variant's); empty: its own refusal budget.",
    )
    retrieval: str = Field(
        "",
        description="The fusion weights whose scores were calibrated "
        "(`Retrieval.describe()`; empty: question vectors only).",
    )
    created_at: str = ""


class ModelManifest(BaseModel):
    name: str
    source_model: str = Field(description="The transformers directory (or package) exported.")
    dim: int
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    max_length: int = Field(gt=0, description="Tokens per input, special tokens included.")
    inputs: list[str] = Field(description="Graph inputs, in the order the graph declares them.")
    output: str = "sentence_embedding"
    variants: dict[str, str] = Field(description="Variant name -> ONNX file name.")
    files: dict[str, str] = Field(description="File name -> sha256 of its bytes.")
    parity_max_abs_diff: float | None = None
    created_at: str = ""
    calibrations: dict[str, AbstainCalibration] = Field(
        default_factory=dict,
        description="Variant -> its calibrated abstain rule (`faq-model calibrate --variant`): "
        "a quantised variant scores differently, so each has its own. Not part of the "
        "fingerprint.",
    )
    abstain: AbstainCalibration | None = Field(
        default=None,
        description="The one abstain rule of manifests written before `calibrations` (for its "
        "`variant`): still read, moved into `calibrations` by the next calibration.",
    )

    def variant_file(self, variant: str) -> str:
        try:
            return self.variants[variant]
        except KeyError:
            known = ", ".join(sorted(self.variants)) or "none"
            raise ManifestError(
                f"model {self.name!r} has no {variant!r} variant (exported: {known})"
            ) from None

    def calibration(self, variant: str) -> AbstainCalibration | None:
        """The abstain rule calibrated on `variant`'s scores, or None."""
        found = self.calibrations.get(variant)
        if found is None and self.abstain is not None and self.abstain.variant == variant:
            return self.abstain
        return found

    def with_calibration(self, calibration: AbstainCalibration) -> ModelManifest:
        """This manifest with `calibration` as its variant's rule, the other variants' kept (an
        old manifest's single rule among them)."""
        kept = dict(self.calibrations)
        if self.abstain is not None:
            kept.setdefault(self.abstain.variant, self.abstain)
        kept[calibration.variant] = calibration
        return self.model_copy(update={"calibrations": kept, "abstain": None})

    def fingerprint(self, variant: str = "fp32") -> str:
        """Identity of the vectors this model variant produces: everything that changes one."""
        parts = [
            self.files.get(self.variant_file(variant), ""),
            self.files.get(TOKENIZER_FILE, ""),
            self.pooling,
            str(self.normalize),
            self.query_prefix,
            self.passage_prefix,
            str(self.max_length),
        ]
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
        return f"{self.name}:{variant}:{digest[:16]}"

    def write(self, model_dir: Path) -> Path:
        path = model_dir / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        path = model_dir / MANIFEST_FILE
        if not path.is_file():
            raise ManifestError(
                f"{path} not found: export a model first (make model, or faq-model export)"
            )
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"{path}: invalid manifest: {exc}") from exc


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
