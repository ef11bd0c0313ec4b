"""`faq-model calibrate` on a hashing FakeEncoder (the data: `answers_setup`).

FakeEncoder vectors are bags of hashed words, so queries that share words with a question score
high and the off-topic queries (no shop words) score low: enough to see the command wire the
data, the calibration and the manifest together.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from index_builder.manifest import ModelManifest
from model_export.calibration import offtopic_split
from model_export.cli import cli
from tests.model_export.answers_setup import OFFTOPIC, SHOPPER, write_setup


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    return write_setup(tmp_path, monkeypatch)


def test_calibrate_stores_the_rule_in_the_manifest(setup: dict[str, Path]) -> None:
    args = ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"])]
    args += ["--answerable", str(setup["shopper"] / "dev.jsonl")]
    args += ["--offtopic", str(setup["offtopic"]), "--refusal-budget", "0.0"]
    # The toy FAQ's answers are all "a": calibrated on the question vectors alone.
    args += ["--answer-weight", "0", "--lexical-weight", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    stored = ModelManifest.read(setup["model"]).abstain
    assert stored is not None
    assert stored.retrieval == "answer_weight=0 lexical_weight=0"  # the score it read
    assert stored.dev_refused == 0.0
    assert stored.dev_abstained == 1.0
    assert stored.answerable == len(SHOPPER)
    assert stored.variant == "fp32"
    assert stored.offtopic == sum(offtopic_split(q) == "dev" for q in OFFTOPIC)
    assert "stored in" in result.output
    # --no-write prints the setting and leaves the manifest alone.
    again = CliRunner().invoke(cli, [*args, "--no-write"])
    assert again.exit_code == 0, again.output
    assert f"FAQ_MIN_SCORE={stored.min_score:.4f}" in again.output


def test_calibrate_bad_data_is_exit_2(setup: dict[str, Path], tmp_path: Path) -> None:
    args = ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"])]
    result = CliRunner().invoke(cli, [*args, "--answerable", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "not found" in result.output
