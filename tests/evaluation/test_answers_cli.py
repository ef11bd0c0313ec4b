"""`faq-model evaluate-answers` on a hashing FakeEncoder (the data: `answers_setup`).

FakeEncoder vectors are bags of hashed words, so queries that share words with a question score
high and the off-topic queries (no shop words) score low: enough to see the command wire the
data, the calibration (`faq-model calibrate`), the manifest and the figures together.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_export.cli import cli
from tests.model_export.answers_setup import write_setup


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    return write_setup(tmp_path, monkeypatch)


def test_evaluate_answers_prints_both_done_when_figures(setup: dict[str, Path]) -> None:
    args = ["evaluate-answers", "--faq", str(setup["faq"]), "--model", f"m={setup['model']}"]
    args += ["--shopper-dir", str(setup["shopper"]), "--offtopic", str(setup["offtopic"])]
    args += ["--examples", str(setup["examples"])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "calibrated now on dev" in out
    assert "off-topic test split abstained 100.0%" in out
    assert "shopper test split wrongly refused" in out
    assert "| shopper test | 6 |" in out and "| README examples | 1 |" in out
    # After `calibrate` the stored rule is used.
    CliRunner().invoke(
        cli,
        ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"]),
         "--answerable", str(setup["shopper"] / "dev.jsonl"), "--offtopic", str(setup["offtopic"])],
    )  # fmt: skip
    assert "(manifest)" in CliRunner().invoke(cli, args).output
