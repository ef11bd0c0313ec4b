from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from model_export.eval_guard import EvalLeakError
from model_export.training.config import RunConfig, config_from_dict
from model_export.training.data import Pair, write_pairs
from model_export.training.trainer import autocast_for, pick_device, train

PAIRS = [
    ("where is my order", "Where is my order and how can I track it?", "en"),
    ("cancel my order please", "How do I cancel my order?", "en"),
    ("refund please", "When do I get my refund?", "en"),
    ("dónde está mi pedido", "Where is my order and how can I track it?", "es"),
    ("puedo cancelar el pedido", "How do I cancel my order?", "es"),
    ("wo ist meine bestellung", "Where is my order and how can I track it?", "de"),
    ("rückerstattung bitte", "When do I get my refund?", "de"),
    ("où est ma commande", "Where is my order and how can I track it?", "fr"),
    ("change my shipping address", "How do I change my shipping address?", "en"),
    ("payment method change", "How do I change my payment method?", "en"),
    ("barang saya belum sampai", "Where is my order and how can I track it?", "id"),
    ("the quick brown fox", "The lazy dog", "en"),
]


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(
        [Pair(q, lb, lang, "test", negative="The lazy dog") for q, lb, lang in PAIRS], pairs
    )
    muse = tmp_path / "en-es.txt"
    muse.write_text("order pedido\ncancel cancelar\nrefund reembolso\nwhere dónde\nmy mi\n")
    return pairs, muse


def _config(tmp_path: Path, base: Path, name: str, **over: Any) -> RunConfig:
    pairs, muse = _setup(tmp_path)
    raw: dict[str, Any] = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "seed": 5,
        "device": "cpu",
        "checkpoint_every": 0,
        "log_every": 1,
        "model": {"base_dir": str(base), "max_length": 32},
        "codeswitch": {
            "languages": ["es"],
            "dictionaries": {"es": {"from_en": [str(muse)]}},
            "rate": 0.5,
        },
        "data": {
            "train_files": [str(pairs)],
            "eval_dirs": [str(tmp_path / "eval")],
            "debian_faq_dir": "",
        },
        "pretrain": {"optim": {"batch_size": 4, "epochs": 1, "max_steps": 3, "lr": 1e-3}},
        "finetune": {"optim": {"batch_size": 4, "epochs": 1, "max_steps": 3, "lr": 1e-3}},
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[key] = value
    return config_from_dict(raw)


def test_run_writes_model_and_report(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    cfg = _config(tmp_path, tiny_bert_dir, "run")
    report = train(cfg, progress=False)
    out = Path(cfg.output_dir)
    saved = json.loads((out / "run_report.json").read_text())
    assert saved["status"] == "complete"
    # 'id' is not a training language: it stays out (zero-shot transfer is measured on it)
    assert saved["data"]["left_out_by_lang"] == {"id": 1}
    assert saved["data"]["pairs"] == len(PAIRS) - 1
    assert [s["stage"] for s in saved["stages"]] == ["pretrain", "finetune"]
    assert {c["stage"] for c in saved["loss_curve"]} == {"pretrain", "finetune"}
    assert all(
        "mlm_query" in c and "sim" in c for c in saved["loss_curve"] if c["stage"] == "pretrain"
    )
    assert saved["config"]["pretrain"]["mlm_weight"] == 0.1
    # the output is a plain transformers directory: Auto classes load it unchanged
    model_dir = Path(report["model_dir"])
    model = AutoModel.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModel.from_pretrained(tiny_bert_dir)
    assert not torch.equal(
        model.encoder.layer[0].attention.self.query.weight,
        base.encoder.layer[0].attention.self.query.weight,
    )
    assert tok("query: where is my order")["input_ids"]


def test_resume_matches_uninterrupted_run(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transformers import AutoModel

    full = _config(tmp_path, tiny_bert_dir, "full")
    train(full, progress=False)
    split = _config(tmp_path, tiny_bert_dir, "split")
    first = train(split, stop_after=3, progress=False)  # 2 pretrain steps + 1 finetune step
    assert first["status"] == "interrupted" and first["model_dir"] is None
    with pytest.raises(FileNotFoundError):
        train(_config(tmp_path, tiny_bert_dir, "nothing"), resume=True, progress=False)
    second = train(split, resume=True, progress=False)
    assert second["status"] == "complete"
    a = AutoModel.from_pretrained(Path(full.output_dir) / "model").state_dict()
    b = AutoModel.from_pretrained(Path(split.output_dir) / "model").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    full_curve = json.loads((Path(full.output_dir) / "run_report.json").read_text())["loss_curve"]
    assert [c["loss"] for c in second["loss_curve"]] == pytest.approx(
        [c["loss"] for c in full_curve]
    )


def test_finetune_loss_falls(tmp_path: Path, tiny_bert_dir: Path) -> None:
    cfg = _config(
        tmp_path,
        tiny_bert_dir,
        "falls",
        stages=["finetune"],
        finetune__optim={
            "batch_size": 8,
            "epochs": 30,
            "max_steps": 30,
            "lr": 3e-3,
            "warmup_ratio": 0.0,
        },
        codeswitch__enabled=False,
    )
    curve = [c["loss"] for c in train(cfg, progress=False)["loss_curve"]]
    assert sum(curve[-5:]) / 5 < 0.5 * sum(curve[:5]) / 5


def test_clear_optical_and_hard_negatives_run(tmp_path: Path, tiny_bert_dir: Path) -> None:
    cfg = _config(
        tmp_path,
        tiny_bert_dir,
        "clear",
        stages=["finetune"],
        finetune__loss="clear",
        finetune__optical_weight=0.5,
        finetune__hard_negatives=True,
    )
    curve = train(cfg, progress=False)["loss_curve"]
    assert all({"fwd", "rev", "kl", "optical"} <= set(c) for c in curve)


def test_guard_stops_a_leaking_run(tmp_path: Path, tiny_bert_dir: Path) -> None:
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "dev.jsonl").write_text(json.dumps({"query": "Wo ist meine Bestellung"}) + "\n")
    with pytest.raises(EvalLeakError):
        train(_config(tmp_path, tiny_bert_dir, "leak"), progress=False)
    dropped = train(
        _config(tmp_path, tiny_bert_dir, "drop", data__guard_mode="drop"), progress=False
    )
    assert dropped["data"]["guard_dropped"] == 1


def test_device_selection() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            pick_device("cuda")
        assert pick_device("auto").type == "cpu"
    # autocast is never switched on for CPU, even when the config asks for bf16
    with autocast_for(torch.device("cpu"), bf16=True):
        x = torch.ones(2, 2) @ torch.ones(2, 2)
    assert x.dtype == torch.float32


def test_weight_decay_groups(tiny_bert_dir: Path) -> None:
    from transformers import AutoModel

    from model_export.training.config import OptimConfig
    from model_export.training.losses import MLMHead
    from model_export.training.trainer import make_optimizer

    model = AutoModel.from_pretrained(tiny_bert_dir)
    head = MLMHead(model.get_input_embeddings())
    opt = make_optimizer([model, head], OptimConfig(weight_decay=0.01))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    plain_ids = {id(p) for p in plain["params"]}
    assert id(head.norm.weight) in plain_ids and id(head.bias) in plain_ids
    assert id(model.embeddings.LayerNorm.weight) in plain_ids
    assert id(head.dense.weight) not in plain_ids
    # the tied decoder is the embedding matrix: optimised once, not twice
    all_ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids))
