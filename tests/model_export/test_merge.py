"""Weight-space averaging with the base (WiSE-FT): the merged tensors are the interpolation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model_export.cli import cli
from model_export.merge import merge_with_base


def _tuned_copy(base: Path, out: Path) -> Path:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.save_pretrained(out)
    for f in base.iterdir():
        if f.is_file() and not (out / f.name).exists():
            shutil.copy2(f, out / f.name)
    return out


def test_merge_interpolates_every_float_tensor(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModel

    tuned = _tuned_copy(tiny_bert_dir, tmp_path / "tuned")
    out = merge_with_base(tiny_bert_dir, tuned, tmp_path / "merged", 0.25)
    base_sd = AutoModel.from_pretrained(tiny_bert_dir).state_dict()
    merged_sd = AutoModel.from_pretrained(out).state_dict()
    for name, value in merged_sd.items():
        if torch.is_floating_point(value):
            torch.testing.assert_close(value, base_sd[name] + 0.25)
    assert (out / "tokenizer.json").is_file()


def test_merge_cli_refuses_a_bad_weight_and_a_missing_model(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    args = ["merge", "--base", str(tiny_bert_dir), "--out", str(tmp_path / "m")]
    missing = runner.invoke(cli, [*args, "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a transformers model directory" in missing.output
    bad = runner.invoke(cli, [*args, "--model", str(tiny_bert_dir), "--weight", "1.5"])
    assert bad.exit_code == 2
    with pytest.raises(ValueError, match="weight"):
        merge_with_base(tiny_bert_dir, tiny_bert_dir, tmp_path / "m", -0.1)
