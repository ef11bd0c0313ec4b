from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from model_export.eval_guard import EvalLeakError, MissingEvalSetsError
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


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


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
            "eval_dirs": [str(_made(tmp_path / "eval"))],
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
    eval_dir = _made(tmp_path / "eval")
    (eval_dir / "dev.jsonl").write_text(json.dumps({"query": "Wo ist meine Bestellung"}) + "\n")
    with pytest.raises(EvalLeakError):
        train(_config(tmp_path, tiny_bert_dir, "leak"), progress=False)
    dropped = train(
        _config(tmp_path, tiny_bert_dir, "drop", data__guard_mode="drop"), progress=False
    )
    assert dropped["data"]["guard_dropped"] == 1


def test_a_run_refuses_an_evaluation_directory_that_is_not_there(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    # The guard cannot keep out what it cannot read: before the sets are built a run would
    # train on them, so it stops instead (and nothing is written).
    missing = tmp_path / "not-built"
    cfg = _config(tmp_path, tiny_bert_dir, "early", data__eval_dirs=[str(missing)])
    with pytest.raises(MissingEvalSetsError, match="not-built"):
        train(cfg, progress=False)
    assert not (tmp_path / "early").exists()
    # Said so, the run goes on without that part of the guard.
    assert train(_config(tmp_path, tiny_bert_dir, "none", data__eval_dirs=[]), progress=False)


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


# --- dev split, best checkpoint, MLM head warm-up ----------------------------------------------

NO_SWITCH = {"enabled": False}  # the dev and warm-up tests need no dictionaries


def test_dev_curve_and_best_in_report(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_export.training import trainer
    from model_export.training.dev_eval import split_dev

    trained: set[Pair] = set()
    micro_batches = trainer._micro_batches

    def spy(*args: Any) -> Any:
        for epoch, micro in micro_batches(*args):
            trained.update(micro)
            yield epoch, micro

    monkeypatch.setattr(trainer, "_micro_batches", spy)
    cfg = _config(
        tmp_path,
        tiny_bert_dir,
        "dev",
        codeswitch=NO_SWITCH,
        dev_fraction=0.4,
        dev_min_pairs=2,
        eval_every=2,
        pretrain__optim={"batch_size": 4, "epochs": 3, "max_steps": 3, "lr": 1e-3},
        finetune__optim={"batch_size": 4, "epochs": 3, "max_steps": 3, "lr": 1e-3},
    )
    report = train(cfg, progress=False)
    saved = json.loads((Path(cfg.output_dir) / "run_report.json").read_text())
    assert saved["data"]["dev_pairs"] >= 2
    assert saved["data"]["pairs"] + saved["data"]["dev_pairs"] == len(PAIRS) - 1
    # dev pairs are never trained on (the split of all pairs: it does not depend on the set)
    dev_pairs = set(split_dev(trainer.read_pairs(cfg.data.train_files[0]), 0.4, cfg.seed)[1])
    assert len(trained) == saved["data"]["pairs"] and not trained & dev_pairs
    # a baseline at step 0, every 2 steps, and the stage's last step (3)
    assert [(c["stage"], c["step"]) for c in saved["dev_curve"]] == [
        ("pretrain", 0),
        ("pretrain", 2),
        ("pretrain", 3),
        ("finetune", 0),
        ("finetune", 2),
        ("finetune", 3),
    ]
    assert all(0.0 <= c["R@1"] <= c["hit@10"] <= 1.0 for c in saved["dev_curve"])
    best = saved["best"]
    assert best["stage"] == "finetune" and best["exported"] is True
    finetune = [c for c in saved["dev_curve"] if c["stage"] == "finetune"]
    assert best["hit@10"] == max(c["hit@10"] for c in finetune)
    assert report["best"] == best

    # tiny data: too few dev pairs for dev_min_pairs (default 20): no split, no evaluation
    plain = train(_config(tmp_path, tiny_bert_dir, "nodev", codeswitch=NO_SWITCH), progress=False)
    assert plain["data"]["dev_pairs"] == 0 and plain["dev_curve"] == [] and plain["best"] is None
    # a split that leaves fewer than 2 training pairs is an error, not a silent tiny run
    greedy = _config(
        tmp_path, tiny_bert_dir, "greedy", codeswitch=NO_SWITCH, dev_fraction=0.99, dev_min_pairs=1
    )
    with pytest.raises(ValueError, match="training pairs"):
        train(greedy, progress=False)


@pytest.mark.parametrize("interrupt", [False, True])
def test_export_is_the_best_checkpoint(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, interrupt: bool
) -> None:
    from transformers import AutoModel

    from model_export.training import trainer

    hit10 = [0.9, 0.95, 0.99, 0.99, 0.5, 0.8, 0.6, 0.7]  # pretrain steps 0-3, finetune 0-3
    seen: list[dict[str, torch.Tensor]] = []  # the weights each evaluation was shown

    class ScriptedDev:  # stands in for DevEvaluator
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, model: torch.nn.Module) -> dict[str, float]:
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return {"R@1": 0.1, "hit@10": hit10[len(seen) - 1]}

    monkeypatch.setattr(trainer, "DevEvaluator", ScriptedDev)
    cfg = _config(
        tmp_path,
        tiny_bert_dir,
        "best",
        codeswitch=NO_SWITCH,
        dev_fraction=0.4,
        dev_min_pairs=1,
        eval_every=1,
        pretrain__optim={"batch_size": 4, "epochs": 3, "max_steps": 3, "lr": 1e-3},
        finetune__optim={"batch_size": 4, "epochs": 3, "max_steps": 3, "lr": 1e-3},
    )
    if interrupt:  # 3 pretrain + 2 finetune steps: after the best step (finetune 1)
        assert train(cfg, stop_after=5, progress=False)["status"] == "interrupted"
        report = train(cfg, resume=True, progress=False)
    else:
        report = train(cfg, progress=False)
    assert len(seen) == len(hit10)
    assert [c["hit@10"] for c in report["dev_curve"]] == hit10
    # the pretraining evaluations score higher, but only the last stage's count
    assert {k: report["best"][k] for k in ("stage", "step", "hit@10")} == {
        "stage": "finetune",
        "step": 1,
        "hit@10": 0.8,
    }
    exported = AutoModel.from_pretrained(Path(cfg.output_dir) / "model").state_dict()
    for k, v in seen[5].items():
        torch.testing.assert_close(exported[k], v, rtol=0, atol=0, msg=k)
    last = seen[-1]
    assert any(not torch.equal(exported[k], last[k]) for k in last)


def test_head_warmup_trains_the_head_alone(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from itertools import pairwise

    from transformers import AutoModel

    cfg = _config(
        tmp_path,
        tiny_bert_dir,
        "warm",
        codeswitch=NO_SWITCH,
        stages=["pretrain"],
        dev_fraction=0.0,
        checkpoint_every=1,
        keep_checkpoints=10,
        pretrain__optim={"batch_size": 4, "epochs": 4, "max_steps": 4, "lr": 1e-3},
        pretrain__head_warmup_steps=2,
        pretrain__head_lr=5e-3,
    )
    report = train(cfg, progress=False)
    assert [c.get("phase") for c in report["loss_curve"]] == ["head-warmup"] * 2 + [None] * 2
    # (logged after the step: the lr of the next one) the encoder's is 0 until the warm-up ends
    first = report["loss_curve"][0]
    assert first["lr"] == 0.0 and first["head_lr"] > 0
    ckpts = {
        int(p.stem.split("-")[-1]): torch.load(p, weights_only=False)
        for p in sorted((Path(cfg.output_dir) / "checkpoints").glob("ckpt-00-*.pt"))
    }
    assert sorted(ckpts) == [1, 2, 3]
    base = AutoModel.from_pretrained(tiny_bert_dir).state_dict()
    for step in (1, 2):  # warm-up: the encoder is exactly the base model, the head moves
        for k, v in ckpts[step]["model"].items():
            assert torch.equal(v, base[k]), (step, k)
        # AdamW holds moments for the head's parameters only: the encoder got no gradient
        n_head = len(ckpts[step]["head"]) - 1  # the tied decoder is the encoder's embedding
        assert len(ckpts[step]["optimizer"]["state"]) == n_head
    heads = [ckpts[s]["head"] for s in (1, 2, 3)]
    for a, b in pairwise(heads):
        assert not torch.equal(a["dense.weight"], b["dense.weight"])
    # after the warm-up both train
    final = AutoModel.from_pretrained(Path(cfg.output_dir) / "model").state_dict()
    for later in (ckpts[3]["model"], final):
        k = "encoder.layer.0.attention.self.query.weight"
        assert not torch.equal(later[k], base[k])
    assert not torch.equal(ckpts[3]["model"][k], final[k])


def test_head_groups_and_schedule(tiny_bert_dir: Path) -> None:
    from transformers import AutoModel

    from model_export.training.config import OptimConfig
    from model_export.training.losses import MLMHead
    from model_export.training.trainer import make_optimizer, stage_schedule

    model = AutoModel.from_pretrained(tiny_bert_dir)
    head = MLMHead(model.get_input_embeddings())
    opt = make_optimizer([model], OptimConfig(lr=1e-4), head=head, head_lr=1e-3)
    parts = [(g["part"], g["lr"], g["weight_decay"] > 0) for g in opt.param_groups]
    assert parts == [
        ("encoder", 1e-4, True),
        ("encoder", 1e-4, False),
        ("head", 1e-3, True),
        ("head", 1e-3, False),
    ]
    head_ids = {id(p) for g in opt.param_groups[2:] for p in g["params"]}
    assert head_ids == {
        id(head.dense.weight),
        id(head.dense.bias),
        id(head.norm.weight),
        id(head.norm.bias),
        id(head.bias),
    }  # not the tied decoder
    sched = stage_schedule(opt, warmup_ratio=0.25, total=10, encoder_delay=2)
    lrs = []
    for _ in range(10):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    enc = [row[0] for row in lrs]
    head_lrs = [row[2] for row in lrs]
    assert enc[:2] == [0.0, 0.0] and enc[2] == pytest.approx(0.5e-4)  # 2-step warm-up of 8
    assert enc[3] == pytest.approx(1e-4) and enc[-1] == pytest.approx(1e-4 / 6)
    assert head_lrs[0] == pytest.approx(1e-3 / 3)  # its own warm-up: ceil(0.25 * 10) = 3 steps


def test_faq_model_train_names_the_config_of_a_missing_evaluation_directory(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from model_export.cli import cli

    config = tmp_path / "run.toml"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("")
    config.write_text(
        f'name = "x"\noutput_dir = "{tmp_path / "out"}"\n'
        f'[data]\ntrain_files = ["{pairs}"]\neval_dirs = ["{tmp_path / "not-built"}"]\n'
    )
    res = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert res.exit_code == 2, res.output
    assert f"error: {config}: data.eval_dirs names" in res.output
    assert "Traceback" not in res.output


def test_faq_model_train_takes_another_seed_and_output_dir(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    """A second run of a recipe (`make cs-without-mixed-log CS_SEED=14`): the config's seed
    and output directory replaced from the command line, the rest of it as written."""
    from typer.testing import CliRunner

    from model_export.cli import cli

    cfg = _config(tmp_path, tiny_bert_dir, "seeded", stages=["finetune"])
    config = tmp_path / "run.json"
    config.write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "elsewhere"
    args = ["train", "--config", str(config), "--seed", "7", "--output-dir", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "run_report.json").read_text())
    assert report["config"]["seed"] == 7
    assert report["config"]["output_dir"] == str(out)
    assert report["config"]["finetune"] == cfg.to_dict()["finetune"]
    assert not (tmp_path / "seeded").exists()
