"""Weight-space ensembling of a fine-tuned encoder with its base (WiSE-FT, Wortsman et al. 2022).

`theta = w * theta_finetuned + (1 - w) * theta_base`, tensor by tensor. Fine-tuning on a shop's
own questions moves the encoder towards that task and away from general text (the English
Debian FAQ control loses several points); interpolating back towards the base keeps most of the
task gain and most of the general ability, at no training cost. Both models must share the
architecture (same parameter names and shapes); non-float tensors (position ids) come from the
fine-tuned model unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def merge_with_base(base_dir: Path, tuned_dir: Path, out_dir: Path, weight: float) -> Path:
    """Write the interpolated model (with the fine-tuned model's tokenizer and side files)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    base = AutoModel.from_pretrained(base_dir)
    tuned = AutoModel.from_pretrained(tuned_dir)
    base_state = base.state_dict()
    merged = {}
    for name, value in tuned.state_dict().items():
        other = base_state.get(name)
        if other is None or other.shape != value.shape:
            raise ValueError(f"{tuned_dir} and {base_dir} differ at {name}: not the same model")
        if torch.is_floating_point(value):
            merged[name] = weight * value + (1.0 - weight) * other
        else:
            merged[name] = value
    tuned.load_state_dict(merged)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tuned.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(tuned_dir).save_pretrained(tmp)
    for f in tuned_dir.iterdir():
        if f.is_file() and not (tmp / f.name).exists():
            shutil.copy2(f, tmp / f.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
