"""`faq-model calibrate` on a hashing FakeEncoder (the data: `answers_setup`).

FakeEncoder vectors are bags of hashed words, so queries that share words with a question score
high and the off-topic queries (no shop words) score low: enough to see the command wire the
data, the calibration and the manifest together.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from index_builder.model.manifest import ModelManifest
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
    stored = ModelManifest.read(setup["model"]).calibration("fp32")
    assert stored is not None
    assert stored.retrieval == "answer_weight=0 lexical_weight=0"  # the score it read
    assert stored.dev_refused == 0.0
    assert stored.dev_abstained == 1.0
    assert stored.answerable == len(SHOPPER)
    assert stored.variant == "fp32"
    assert stored.offtopic == sum(offtopic_split(q) == "dev" for q in OFFTOPIC)
    assert "stored in" in result.output and "for the fp32 variant" in result.output
    # Anchors are kept whatever the weight: a reindex scores a new FAQ against them.
    assert len(stored.anchors) == stored.offtopic
    # --no-write prints the setting and leaves the manifest alone.
    again = CliRunner().invoke(cli, [*args, "--no-write"])
    assert again.exit_code == 0, again.output
    assert f"FAQ_MIN_SCORE={stored.min_score:.4f}" in again.output


def test_calibrate_bad_data_is_exit_2(setup: dict[str, Path], tmp_path: Path) -> None:
    args = ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"])]
    result = CliRunner().invoke(cli, [*args, "--answerable", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "not found" in result.output


def _calibrate(setup: dict[str, Path], *extra: str) -> tuple[int, str]:
    args = ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"])]
    args += ["--answerable", str(setup["shopper"] / "dev.jsonl")]
    args += ["--offtopic", str(setup["offtopic"]), "--answer-weight", "0", "--lexical-weight", "0"]
    result = CliRunner().invoke(cli, [*args, *extra])
    return result.exit_code, result.output


def test_each_variant_gets_its_own_rule_and_keeps_the_others(setup: dict[str, Path]) -> None:
    # An int8 rule matched to fp32's needs fp32's first.
    code, output = _calibrate(setup, "--variant", "int8")
    assert code == 2 and "faq-model calibrate --variant fp32 first" in output
    assert _calibrate(setup)[0] == 0
    code, output = _calibrate(setup, "--variant", "int8")
    assert code == 0, output
    assert "matched to the fp32 variant's decisions" in output
    manifest = ModelManifest.read(setup["model"])
    fp32, int8 = manifest.calibration("fp32"), manifest.calibration("int8")
    assert fp32 is not None and int8 is not None
    assert (fp32.variant, int8.variant, int8.matched_to) == ("fp32", "int8", "fp32")
    # The FakeEncoder scores both alike: matching reproduces fp32's decisions exactly.
    assert (int8.dev_refused, int8.dev_abstained) == (fp32.dev_refused, fp32.dev_abstained)
    assert int8.offtopic_weight == fp32.offtopic_weight
    # Its own refusal budget instead; fp32's rule is left as it was.
    code, output = _calibrate(setup, "--variant", "int8", "--match-variant", "none")
    assert code == 0, output
    again = ModelManifest.read(setup["model"])
    assert again.calibration("fp32") == fp32
    own = again.calibration("int8")
    assert own is not None and own.matched_to == ""


def test_an_old_manifests_single_rule_is_kept_beside_a_new_variants(
    setup: dict[str, Path],
) -> None:
    assert _calibrate(setup)[0] == 0
    manifest = ModelManifest.read(setup["model"])
    old = manifest.calibration("fp32")
    assert old is not None
    # As written before per-variant rules: one `abstain`, no `calibrations`.
    legacy = manifest.model_copy(update={"abstain": old, "calibrations": {}})
    legacy.write(setup["model"])
    assert ModelManifest.read(setup["model"]).calibration("fp32") == old
    assert ModelManifest.read(setup["model"]).calibration("int8") is None
    assert _calibrate(setup, "--variant", "int8")[0] == 0
    moved = ModelManifest.read(setup["model"])
    assert moved.abstain is None
    assert set(moved.calibrations) == {"fp32", "int8"} and moved.calibrations["fp32"] == old
