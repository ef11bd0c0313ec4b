"""The training loop: continual pre-training and/or fine-tuning, as one run from one config.

A run goes through `config.stages` in order ("pretrain", then "finetune" by default), each with
its own AdamW (weight decay 0.01, none on biases and LayerNorm) and linear warm-up/decay
schedule. Every optimizer step re-seeds torch from (seed, stage, step), and code-switching is
seeded by (seed, epoch, text), so a run resumed from a checkpoint takes exactly the steps the
uninterrupted run would have taken. The output is `<output_dir>/model/`: a transformers
directory (save_pretrained + tokenizer) that the ONNX export takes as it is, and
`<output_dir>/run_report.json`. With a dev split (`RunConfig.dev_fraction`), the exported weights
are those of the last stage's best dev evaluation (`dev_eval.py`), not of its last step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

from model_export.codeswitch import ENGLISH, LanguageSwitcher
from model_export.eval_guard import EvalGuard, MissingEvalSetsError
from model_export.training.config import OptimConfig, RunConfig
from model_export.training.data import (
    Pair,
    attach_negative_queries,
    dedupe,
    read_pairs,
    select_languages,
)
from model_export.training.dev_eval import BestKeeper, DevEvaluator, split_dev
from model_export.training.losses import (
    ContinualPretrainingLoss,
    MLMHead,
    alignment_loss,
    clear_loss,
    info_nce,
    mask_tokens,
    mlm_loss,
    optical_loss,
)
from model_export.training.switching import build_switcher, load_tables

log = logging.getLogger(__name__)

MODEL_SUBDIR = "model"
REPORT_NAME = "run_report.json"
CHECKPOINT_DIR = "checkpoints"
_WEIGHT_FILES = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}


# --- devices ----------------------------------------------------------------------------------


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device='cuda' but torch sees no CUDA device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA only: CPU bf16 matmuls are slower than fp32 on most hosts."""
    if device.type == "cuda" and bf16:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)


def _step_seed(seed: int, stage_index: int, step: int) -> int:
    return (seed * 1_000_003 + stage_index * 10_007 + step) % 2**63


# --- data -------------------------------------------------------------------------------------


@dataclass
class DataSummary:
    pairs: int = 0
    read: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    by_lang: dict[str, int] = field(default_factory=dict)
    left_out_by_lang: dict[str, int] = field(default_factory=dict)
    duplicates_removed: int = 0
    guard_dropped: int = 0
    guard_texts: int = 0
    # Held out of `pairs` for dev evaluation (by_source and by_lang count them too).
    dev_pairs: int = 0


def load_training_pairs(config: RunConfig) -> tuple[list[Pair], DataSummary]:
    dc = config.data
    if not dc.train_files:
        raise ValueError("config.data.train_files is empty: nothing to train on")
    # The guard skips an evaluation directory that is not there, which is right for the data
    # builders but not here: a run before `faq-model eval-data` would train on the evaluation
    # texts (a fresh clone's `make train` once did). Named in the config, it must exist.
    missing = [d for d in dc.eval_dirs if not Path(d).is_dir()]
    if missing:
        raise MissingEvalSetsError(
            f"data.eval_dirs names {', '.join(map(str, missing))}, which does not exist: build "
            "the evaluation sets first (make train does; by hand: faq-model eval-data) so that "
            "training cannot see them, or take it out of data.eval_dirs to train without them"
        )
    pairs: list[Pair] = []
    for f in dc.train_files:
        from_file = read_pairs(f)
        cap = dc.max_pairs_per_file.get(f, 0)
        if cap and len(from_file) > cap:
            from_file = random.Random(f"{config.seed}:{f}").sample(from_file, cap)
        pairs.extend(from_file)
    summary = DataSummary(read=len(pairs))
    pairs, left_out = select_languages(pairs, dc.languages)
    summary.left_out_by_lang = dict(left_out)
    if dc.dedupe:
        before = len(pairs)
        pairs = dedupe(pairs)
        summary.duplicates_removed = before - len(pairs)
    guard = EvalGuard.from_sources(
        dc.eval_dirs,
        debian_faq_dir=dc.debian_faq_dir or None,
        allow_shopper_splits=dc.allow_shopper_splits,
        mode=dc.guard_mode,
    )
    summary.guard_texts = len(guard.texts)
    pairs, summary.guard_dropped = guard.filter(pairs)
    if dc.max_pairs and len(pairs) > dc.max_pairs:
        pairs = random.Random(config.seed).sample(pairs, dc.max_pairs)
    if len(pairs) < 2:
        raise ValueError(f"{len(pairs)} training pairs left: in-batch losses need at least 2")
    pairs = attach_negative_queries(pairs)
    summary.pairs = len(pairs)
    summary.by_source = dict(Counter(p.source.split(":")[0] for p in pairs))
    summary.by_lang = dict(Counter(p.lang for p in pairs))
    return pairs, summary


def build_switchers(
    config: RunConfig,
) -> tuple[dict[str, LanguageSwitcher | None], dict[str, Any]]:
    """One switcher per stage (None where the stage does not switch) and the dictionary report."""
    cs = config.codeswitch
    stages = {"pretrain": config.pretrain.codeswitch, "finetune": config.finetune.codeswitch}
    if not cs.enabled or not any(stages[s].enabled for s in config.stages):
        return {s: None for s in stages}, {}
    tables = load_tables(cs)
    switchers = {
        name: build_switcher(cs, tables, seed=config.seed, stage=stage_cfg)
        for name, stage_cfg in stages.items()
    }
    return switchers, tables.report()


# --- model pieces -----------------------------------------------------------------------------


def pool(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _no_decay(name: str) -> bool:
    """Biases and normalisation weights are not decayed (BERT's convention)."""
    parts = name.lower().split(".")
    return parts[-1] == "bias" or any("norm" in p for p in parts[:-1])


def _decay_groups(
    modules: Sequence[nn.Module], weight_decay: float, seen: set[int], **extra: Any
) -> list[dict[str, Any]]:
    """[decayed, not decayed] parameter groups of `modules`, skipping those already `seen`."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if _no_decay(name) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, **extra},
        {"params": no_decay, "weight_decay": 0.0, **extra},
    ]


def make_optimizer(
    modules: Sequence[nn.Module],
    oc: OptimConfig,
    *,
    head: nn.Module | None = None,
    head_lr: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over `modules`; `head`'s own parameters (not those it shares with `modules`, such
    as a tied decoder) get groups of their own, marked part="head", at `head_lr` (None: oc.lr).
    """
    seen: set[int] = set()
    groups = _decay_groups(modules, oc.weight_decay, seen, part="encoder")
    if head is not None:
        lr = oc.lr if head_lr is None else head_lr
        groups += _decay_groups([head], oc.weight_decay, seen, part="head", lr=lr)
    return torch.optim.AdamW(groups, lr=oc.lr)


def _linear_factor(warmup: int, total: int, delay: int = 0) -> Callable[[int], float]:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total`, starting at step
    `delay` (0 before it)."""

    def factor(step: int) -> float:
        step -= delay
        if step < 0:
            return 0.0
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - delay - step) / max(1, total - delay - warmup))

    return factor


def linear_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_factor(warmup, total))


def stage_schedule(
    optimizer: torch.optim.Optimizer, warmup_ratio: float, total: int, encoder_delay: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear schedule per group: the head's over the whole stage, the encoder's over the
    steps after the `encoder_delay` head-only steps (its lr is 0 during them)."""
    factors = []
    for group in optimizer.param_groups:
        delay = 0 if group.get("part") == "head" else min(encoder_delay, total)
        warmup = math.ceil(warmup_ratio * (total - delay))
        factors.append(_linear_factor(warmup, total, delay))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


@dataclass
class Batch:
    pairs: list[Pair]
    queries: list[str]  # after code-switching
    labels: list[str]
    # Per row, the languages of the query's replacements (an empty set: not switched); an empty
    # list when the stage switches no query. The alignment loss needs to know that a switched
    # query mixes exactly the pair's two languages.
    query_switch: list[frozenset[str]] = field(default_factory=list)


@dataclass
class FinetuneInputs:
    """Which text reaches which input of the fine-tuning losses (one list entry per pair).

    InfoNCE: `queries` against `labels`. CLEAR: `q_en` is the English side of the pair (the
    English label, else the English query, else the original query when neither side is
    English), `q_tgt` the non-English or switched side (the batch's queries), `d` the labels,
    `q_tgt_neg` the target-language queries of the hard negatives. OPTICAL: on bitext pairs only
    (`optical_rows`), the student reads `q_tgt` and the frozen teacher the English side.
    """

    queries: list[str]
    labels: list[str]
    q_en: list[str]
    negatives: list[str]
    q_tgt_neg: list[str]
    optical_rows: list[int]


@dataclass
class AlignmentInputs:
    """The code-switched queries of a batch whose two monolingual sources are known.

    `rows` index the batch (its switched query is the mixed text, already embedded by the
    retrieval loss); `target` is the target-language sentence and `english` the English one,
    both unswitched, one entry per row.
    """

    rows: list[int]
    target: list[str]
    english: list[str]


def from_sources(source: str, sources: Sequence[str]) -> bool:
    """Whether a pair's `source` is one of `sources`, itself or by its prefix before a ":"."""
    return any(source == s or source.startswith(s + ":") for s in sources)


def alignment_inputs(batch: Batch, sources: Sequence[str]) -> AlignmentInputs:
    """Rows whose query was switched and whose pair is a translation with English on one side.

    A non-English query switched X->en (its label the English sentence): target = the query as
    written, english = the label. An English query switched en->X (its label the X sentence):
    english = the query as written, target = the label. A row counts only when every
    replacement is in the pair's other language: an English query switched towards a third
    language (no dictionary for the label's) has no known target-language source.
    """
    out = AlignmentInputs([], [], [])
    for i, (pair, switched) in enumerate(zip(batch.pairs, batch.query_switch, strict=False)):
        if not switched or not from_sources(pair.source, sources):
            continue
        if ENGLISH not in (pair.lang, pair.label_lang) or pair.lang == pair.label_lang:
            continue
        if switched != {pair.label_lang}:
            continue
        if pair.lang == ENGLISH:
            target, english = pair.label, pair.query
        else:
            target, english = pair.query, pair.label
        out.rows.append(i)
        out.target.append(target)
        out.english.append(english)
    return out


def english_side(pair: Pair) -> str:
    if pair.label_lang == ENGLISH:
        return pair.label
    return pair.query


def finetune_inputs(batch: Batch, *, hard_negatives: bool) -> FinetuneInputs:
    pairs = batch.pairs
    negatives = [p.negative for p in pairs if hard_negatives and p.negative]
    q_tgt_neg = [
        p.negative_query for p in pairs if hard_negatives and p.negative and p.negative_query
    ]
    optical_rows = [
        i for i, p in enumerate(pairs) if p.is_bitext and ENGLISH in (p.lang, p.label_lang)
    ]
    return FinetuneInputs(
        queries=batch.queries,
        labels=batch.labels,
        q_en=[english_side(p) for p in pairs],
        negatives=negatives,
        q_tgt_neg=q_tgt_neg,
        optical_rows=optical_rows,
    )


class _Stage:
    """Shared state of one stage: the model, tokenizer, switcher and config."""

    def __init__(
        self,
        config: RunConfig,
        model: nn.Module,
        tokenizer: Any,
        switchers: dict[str, LanguageSwitcher | None],
        device: torch.device,
        use_bf16: bool = False,
    ) -> None:
        self.use_bf16 = use_bf16
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.switchers = switchers
        # stage -> "side:lang:direction" -> texts; "none" = no dictionary for that language.
        self.switch_counts: dict[str, Counter[str]] = {}
        self.device = device

    def tokenize(self, texts: list[str], prefix: str) -> dict[str, Tensor]:
        enc = self.tokenizer(
            [prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.config.model.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def forward(
        self,
        enc: dict[str, Tensor],
        input_ids: Tensor | None = None,
        model: nn.Module | None = None,
    ) -> Tensor:
        """Last hidden states; only this encoder pass runs under bf16 autocast (CUDA).

        The losses cast to fp32 themselves: cos/tau with tau 0.05 spans +-20, where bf16 keeps
        only about 0.1 of absolute precision, and Sinkhorn's exp(-C/eps) needs fp32 too.
        """
        kwargs = {
            "input_ids": enc["input_ids"] if input_ids is None else input_ids,
            "attention_mask": enc["attention_mask"],
        }
        if "token_type_ids" in enc:
            kwargs["token_type_ids"] = enc["token_type_ids"]
        with autocast_for(self.device, self.use_bf16):
            out = (model or self.model)(**kwargs)
        hidden: Tensor = out.last_hidden_state
        return hidden

    def make_batch(self, pairs: list[Pair], epoch: int, stage_name: str) -> Batch:
        """Switch each side with its own language's dictionaries, as the stage's config says."""
        queries = [p.query for p in pairs]
        labels = [p.label for p in pairs]
        switcher = self.switchers.get(stage_name)
        if switcher is None:
            return Batch(pairs, queries, labels)
        sc = (
            self.config.pretrain.codeswitch
            if stage_name == "pretrain"
            else self.config.finetune.codeswitch
        )
        counts = self.switch_counts.setdefault(stage_name, Counter())
        salt = f"{stage_name}:{epoch}"

        def side(
            name: str, texts: list[str], langs: list[str], partners: list[str]
        ) -> tuple[list[str], list[frozenset[str]]]:
            out: list[str] = []
            mixed: list[frozenset[str]] = []
            for text, lang, partner in zip(texts, langs, partners, strict=True):
                result = switcher.switch(text, lang, partner=partner, salt=f"{salt}:{name}")
                counts[f"{name}:{lang}:{result.direction or 'none'}"] += 1
                counts[f"{name}:switched" if result.replacements else f"{name}:unchanged"] += 1
                out.append(result.text)
                mixed.append(frozenset(r.lang for r in result.replacements))
            return out, mixed

        q_langs = [p.lang for p in pairs]
        l_langs = [p.label_lang for p in pairs]
        query_switch: list[frozenset[str]] = []
        if sc.switch_queries:
            queries, query_switch = side("query", queries, q_langs, l_langs)
        if sc.switch_labels:
            labels, _ = side("label", labels, l_langs, q_langs)
        return Batch(pairs, queries, labels, query_switch)


def duplicate_mask(
    labels: Sequence[str], device: torch.device, topics: Sequence[str | None] | None = None
) -> Tensor:
    """True at (i, j), i != j, where label j is not a real negative for row i.

    That is the same text, or (where both pairs name one) the same FAQ topic: with 51 topics a
    batch of 16 often holds two queries of one topic, or a topic's question and its answer.
    """
    keys = [" ".join(lb.casefold().split()) for lb in labels]
    groups = list(topics) if topics is not None else [None] * len(keys)
    n = len(keys)
    m = torch.tensor(
        [
            [
                i != j
                and (keys[i] == keys[j] or (groups[i] is not None and groups[i] == groups[j]))
                for j in range(n)
            ]
            for i in range(n)
        ]
    )
    return m.to(device)


# --- checkpoints ------------------------------------------------------------------------------


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / CHECKPOINT_DIR).glob("ckpt-*.pt"))


def _save_checkpoint(out: Path, state: dict[str, Any], keep: int) -> Path:
    ckdir = out / CHECKPOINT_DIR
    ckdir.mkdir(parents=True, exist_ok=True)
    path = ckdir / f"ckpt-{state['stage_index']:02d}-{state['step']:08d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write must not leave a truncated "latest" checkpoint
    for old in _checkpoints(out)[: -max(1, keep)]:
        old.unlink()
    return path


# --- the run ----------------------------------------------------------------------------------


@dataclass
class _Progress:
    loss_curve: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0


def _stage_steps(n_pairs: int, oc: OptimConfig) -> tuple[int, int]:
    per_step = oc.batch_size * oc.grad_accum
    steps_per_epoch = max(1, n_pairs // per_step)
    total = steps_per_epoch * oc.epochs
    if oc.max_steps > 0:
        total = min(total, oc.max_steps) if oc.epochs > 0 else oc.max_steps
    return steps_per_epoch, total


def _epoch_order(n: int, seed: int, stage_index: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{stage_index}:{epoch}").shuffle(order)
    return order


def _micro_batches(
    pairs: list[Pair], oc: OptimConfig, seed: int, stage_index: int, step: int, spe: int
) -> Iterator[tuple[int, list[Pair]]]:
    epoch, within = divmod(step, spe)
    order = _epoch_order(len(pairs), seed, stage_index, epoch)
    bs = min(oc.batch_size, len(pairs))
    for k in range(oc.grad_accum):
        start = ((within * oc.grad_accum + k) * bs) % len(pairs)
        idx = [order[(start + j) % len(pairs)] for j in range(bs)]
        yield epoch, [pairs[i] for i in idx]


def _split_for_dev(
    pairs: list[Pair], summary: DataSummary, config: RunConfig
) -> tuple[list[Pair], list[Pair]]:
    """(train, dev) per config.dev_*; records the sizes in `summary`."""
    train_pairs, dev = split_dev(pairs, config.dev_fraction, config.seed, config.dev_max_pairs)
    if dev and len(dev) < config.dev_min_pairs:
        log.warning(
            "dev split: %d pairs < dev_min_pairs=%d; no dev evaluation, all pairs train",
            len(dev),
            config.dev_min_pairs,
        )
        return pairs, []
    if len(train_pairs) < 2:
        raise ValueError(
            f"the dev split (dev_fraction={config.dev_fraction}) leaves {len(train_pairs)} "
            "training pairs: in-batch losses need at least 2; lower dev_fraction or add data"
        )
    summary.pairs, summary.dev_pairs = len(train_pairs), len(dev)
    return train_pairs, dev


@dataclass
class _Dev:
    """The run's dev evaluations, and the best one of the last stage (the one to export)."""

    evaluator: DevEvaluator | None
    keeper: BestKeeper
    last_stage: int
    curve: list[dict[str, Any]] = field(default_factory=list)

    def evaluate(self, model: nn.Module, stage_index: int, stage_name: str, step: int) -> None:
        if self.evaluator is None:
            return
        metrics = self.evaluator(model)
        entry = {"stage": stage_name, "step": step, **{k: round(v, 6) for k, v in metrics.items()}}
        self.curve.append(entry)
        best = stage_index == self.last_stage and self.keeper.update(entry, model)
        log.info("dev %s%s", entry, " (best)" if best else "")

    def checkpoint(self) -> dict[str, Any]:
        # The best weights travel in the checkpoint: after a resume they could not be
        # re-evaluated into existence, the model has moved on since.
        return {"dev_curve": self.curve, "best": self.keeper.state_dict()}

    def resume(self, ckpt: dict[str, Any]) -> None:
        self.curve = ckpt.get("dev_curve", [])
        self.keeper.load_state_dict(ckpt.get("best"))


def train(
    config: RunConfig,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every stage of `config`; returns the run report (also written as JSON).

    `stop_after` ends this invocation after that many optimizer steps with a checkpoint, as a
    pre-empted job would (used by the resume test and for time-boxed runs).
    """
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    use_bf16 = device.type == "cuda" and config.bf16

    pairs, summary = load_training_pairs(config)  # a refused run leaves no output behind
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, dev_pairs = _split_for_dev(pairs, summary, config)  # dev pairs never train
    switchers, dictionaries_report = build_switchers(config)
    base = Path(config.model.base_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModel.from_pretrained(base).to(device)
    if config.model.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    stage = _Stage(config, model, tokenizer, switchers, device, use_bf16)

    mc = config.model
    evaluator: DevEvaluator | None = None
    if dev_pairs:
        evaluator = DevEvaluator(
            dev_pairs,
            tokenizer,
            lambda hidden, mask: pool(hidden, mask, mc.pooling),
            query_prefix=mc.query_prefix,
            passage_prefix=mc.passage_prefix,
            max_length=mc.max_length,
            device=device,
        )
    keeper = BestKeeper(config.best_metric, keep_state=config.select_best)
    dev = _Dev(evaluator, keeper, last_stage=len(config.stages) - 1)

    ckpt: dict[str, Any] | None = None
    if resume:
        found = _checkpoints(out)
        if not found:
            raise FileNotFoundError(f"--resume: no checkpoint under {out / CHECKPOINT_DIR}")
        ckpt = torch.load(found[-1], map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        log.info("resuming from %s", found[-1])
    progress_state = _Progress()
    if ckpt is not None:
        progress_state.loss_curve = ckpt["loss_curve"]
        progress_state.stages = ckpt["stages"]
        progress_state.elapsed_s = ckpt["elapsed_s"]
        dev.resume(ckpt)

    steps_this_call = 0
    interrupted = False
    for stage_index, stage_name in enumerate(config.stages):
        if ckpt is not None and stage_index < ckpt["stage_index"]:
            continue
        oc = config.pretrain.optim if stage_name == "pretrain" else config.finetune.optim
        spe, total = _stage_steps(len(pairs), oc)
        start_step = 0
        head: MLMHead | None = None
        if stage_name == "pretrain":
            emb = model.get_input_embeddings()
            head = MLMHead(emb, getattr(model.config, "layer_norm_eps", 1e-12)).to(device)
        teacher: nn.Module | None = None
        if stage_name == "finetune" and config.finetune.optical_weight > 0:
            teacher = AutoModel.from_pretrained(base).to(device).eval()
            teacher.requires_grad_(False)
        modules: list[nn.Module] = [model] + ([head] if head is not None else [])
        # Head warm-up: the first steps train the MLM head alone (see PretrainConfig).
        head_warmup = max(0, config.pretrain.head_warmup_steps) if head is not None else 0
        optimizer = make_optimizer([model], oc, head=head, head_lr=config.pretrain.head_lr)
        scheduler = stage_schedule(optimizer, oc.warmup_ratio, total, encoder_delay=head_warmup)
        if ckpt is not None and ckpt["stage_index"] == stage_index:
            start_step = ckpt["step"]
            if ckpt["optimizer"] is not None:
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
            if head is not None and ckpt.get("head") is not None:
                head.load_state_dict(ckpt["head"])
        if start_step >= total:
            continue
        model.train()
        step_fn = (
            _pretrain_step(stage, head)
            if stage_name == "pretrain"
            else _finetune_step(stage, teacher)
        )

        if start_step == 0:
            dev.evaluate(model, stage_index, stage_name, 0)  # the stage's baseline
        trainable = [p for p in model.parameters() if p.requires_grad]

        bar = tqdm(
            total=total,
            initial=start_step,
            desc=stage_name,
            disable=not progress,
            dynamic_ncols=True,
        )
        stage_t0 = time.perf_counter()
        samples = 0
        step = start_step
        while step < total:
            step_seed = _step_seed(config.seed, stage_index, step)
            torch.manual_seed(step_seed)
            gen = torch.Generator().manual_seed(step_seed)
            # Frozen, the encoder gets no gradient at all: no update, no AdamW moments, and
            # no backward pass through it.
            head_only = step < head_warmup
            for p in trainable:
                p.requires_grad_(not head_only)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            parts_sum: Counter[str] = Counter()
            for epoch, micro in _micro_batches(pairs, oc, config.seed, stage_index, step, spe):
                batch = stage.make_batch(micro, epoch, stage_name)
                loss, parts = step_fn(batch, gen)
                if loss.requires_grad:  # head-only, a batch with nothing masked has no grad
                    (loss / oc.grad_accum).backward()  # type: ignore[no-untyped-call]
                loss_sum += float(loss.detach()) / oc.grad_accum
                parts_sum.update({k: v / oc.grad_accum for k, v in parts.items()})
                samples += len(micro)
            if oc.grad_clip > 0:
                params = [p for m in modules for p in m.parameters() if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, oc.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            steps_this_call += 1
            if not math.isfinite(loss_sum):
                raise FloatingPointError(f"{stage_name} step {step}: loss is {loss_sum}")
            rate = samples / max(1e-9, time.perf_counter() - stage_t0)
            if step % max(1, config.log_every) == 0 or step in (1, total):
                progress_state.loss_curve.append(
                    {
                        "stage": stage_name,
                        "step": step,
                        "loss": round(loss_sum, 6),
                        "lr": scheduler.get_last_lr()[0],
                        "samples_per_s": round(rate, 2),
                        **({"head_lr": scheduler.get_last_lr()[-1]} if head is not None else {}),
                        **({"phase": "head-warmup"} if head_only else {}),
                        **{k: round(v, 6) for k, v in parts_sum.items()},
                    }
                )
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.4f}", samples_s=f"{rate:.1f}")

            if step == total or (config.eval_every > 0 and step % config.eval_every == 0):
                dev.evaluate(model, stage_index, stage_name, step)
            elapsed_now = progress_state.elapsed_s + time.perf_counter() - t0
            stopping = stop_after is not None and steps_this_call >= stop_after and step < total
            due = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
            if stopping or (due and step < total):
                state = _state(
                    stage_index,
                    step,
                    model,
                    head,
                    optimizer,
                    scheduler,
                    progress_state,
                    elapsed_now,
                    config,
                )
                _save_checkpoint(out, {**state, **dev.checkpoint()}, config.keep_checkpoints)
            if stopping:
                interrupted = True
                break
        bar.close()
        for p in trainable:
            p.requires_grad_(True)
        stage_time = time.perf_counter() - stage_t0
        if interrupted:
            break
        curve = [c["loss"] for c in progress_state.loss_curve if c["stage"] == stage_name]
        progress_state.stages.append(
            {
                "stage": stage_name,
                "steps": total,
                "steps_per_epoch": spe,
                "batch_size": oc.batch_size,
                "grad_accum": oc.grad_accum,
                "time_s_last_session": round(stage_time, 2),
                "samples_per_s": round(samples / max(1e-9, stage_time), 2),
                "loss_first": curve[0] if curve else None,
                "loss_last": curve[-1] if curve else None,
            }
        )
        # Mark the stage done, so a resume after this point goes straight to the next stage.
        _save_checkpoint(
            out,
            {
                "stage_index": stage_index + 1,
                "step": 0,
                "model": model.state_dict(),
                "head": None,
                "optimizer": None,
                "scheduler": None,
                "loss_curve": progress_state.loss_curve,
                "stages": progress_state.stages,
                "elapsed_s": progress_state.elapsed_s + time.perf_counter() - t0,
                "config": config.to_dict(),
                **dev.checkpoint(),
            },
            config.keep_checkpoints,
        )

    elapsed = progress_state.elapsed_s + (time.perf_counter() - t0)
    report: dict[str, Any] = {
        "name": config.name,
        "status": "interrupted" if interrupted else "complete",
        "config": config.to_dict(),
        "device": str(device),
        "autocast": "bf16" if use_bf16 else "fp32",
        "torch": torch.__version__,
        "data": summary.__dict__,
        "dictionaries": dictionaries_report,
        "codeswitch": {k: dict(sorted(v.items())) for k, v in stage.switch_counts.items()},
        "stages": progress_state.stages,
        "loss_curve": progress_state.loss_curve,
        "dev_curve": dev.curve,
        "best": None,
        "time_s": round(elapsed, 2),
        # What a GPU run needs of the card's memory (the allocator's peak, not nvidia-smi's).
        "peak_gpu_memory_mb": (
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda"
            else None
        ),
        "model_dir": None,
    }
    exported_best = not interrupted and config.select_best and keeper.restore(model)
    if keeper.entry is not None:
        # exported: the saved model is this checkpoint rather than the last step
        report["best"] = {**keeper.entry, "exported": exported_best}
    if not interrupted:
        model_dir = save_model(model, tokenizer, base, out / MODEL_SUBDIR)
        report["model_dir"] = str(model_dir)
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _state(
    stage_index: int,
    step: int,
    model: nn.Module,
    head: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    progress: _Progress,
    elapsed_s: float,
    config: RunConfig,
) -> dict[str, Any]:
    return {
        "stage_index": stage_index,
        "step": step,
        "model": model.state_dict(),
        "head": head.state_dict() if head is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "loss_curve": progress.loss_curve,
        "stages": progress.stages,
        "elapsed_s": elapsed_s,
        "config": config.to_dict(),
    }


def save_model(model: nn.Module, tokenizer: Any, base: Path, model_dir: Path) -> Path:
    """save_pretrained + tokenizer, plus any side files of the base dir (e.g. pooling notes)."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    model.save_pretrained(model_dir)  # type: ignore[operator]
    tokenizer.save_pretrained(model_dir)
    for f in base.iterdir():
        if f.is_file() and f.name not in _WEIGHT_FILES and not (model_dir / f.name).exists():
            shutil.copy2(f, model_dir / f.name)
    return model_dir


StepFn = Callable[[Batch, torch.Generator], tuple[Tensor, dict[str, float]]]


def _pretrain_step(stage: _Stage, head: MLMHead | None) -> StepFn:
    assert head is not None
    cfg = stage.config
    pc = cfg.pretrain
    objective = ContinualPretrainingLoss(pc.mlm_weight, pc.tau, pc.similarity_loss)
    tok = stage.tokenizer
    vocab = min(len(tok), stage.model.get_input_embeddings().num_embeddings)  # type: ignore[operator]

    def side(texts: list[str], prefix: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        enc = stage.tokenize(texts, prefix)
        ids, labels = mask_tokens(
            enc["input_ids"],
            enc["special_tokens_mask"],
            mask_token_id=tok.mask_token_id,
            vocab_size=vocab,
            probability=pc.mlm_probability,
            generator=gen,
        )
        # One pass on the corrupted text serves both the MLM loss and the sentence vector:
        # half the cost of a second clean pass, and the similarity loss then also sees noise.
        hidden = stage.forward(enc, ids)
        return mlm_loss(head, hidden, labels), pool(
            hidden, enc["attention_mask"], cfg.model.pooling
        )

    def step(batch: Batch, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        mlm_q, q = side(batch.queries, cfg.model.query_prefix, gen)
        mlm_l, lab = side(batch.labels, cfg.model.passage_prefix, gen)
        result: tuple[Tensor, dict[str, float]] = objective(
            mlm_q,
            mlm_l,
            q,
            lab,
            duplicate_mask(batch.labels, stage.device, [p.topic for p in batch.pairs]),
        )
        return result

    return step


def _finetune_step(stage: _Stage, teacher: nn.Module | None) -> StepFn:
    cfg = stage.config
    fc = cfg.finetune
    mc = cfg.model

    def embed(texts: list[str], prefix: str) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        enc = stage.tokenize(texts, prefix)
        hidden = stage.forward(enc)
        return pool(hidden, enc["attention_mask"], mc.pooling), hidden, enc

    def sources(texts: list[str]) -> Tensor:
        """The alignment loss's targets: no gradient (see losses/alignment.py) and no dropout,
        so that a row's target is the sentence's embedding, not one noisy draw of it."""
        stage.model.eval()
        try:
            with torch.no_grad():
                return embed(texts, mc.query_prefix)[0]
        finally:
            stage.model.train()

    def step(batch: Batch, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        inputs = finetune_inputs(batch, hard_negatives=fc.hard_negatives)
        q, q_hidden, q_enc = embed(inputs.queries, mc.query_prefix)
        d, _, _ = embed(inputs.labels, mc.passage_prefix)
        dup = duplicate_mask(inputs.labels, stage.device, [p.topic for p in batch.pairs])
        negatives = embed(inputs.negatives, mc.passage_prefix)[0] if inputs.negatives else None
        parts: dict[str, float] = {}
        if fc.loss == "clear":
            q_en = embed(inputs.q_en, mc.query_prefix)[0]
            q_tgt_neg = embed(inputs.q_tgt_neg, mc.query_prefix)[0] if inputs.q_tgt_neg else None
            loss, parts = clear_loss(
                q_en,
                q,
                d,
                d_neg=negatives,
                q_tgt_neg=q_tgt_neg,
                a=fc.clear_a,
                b=fc.clear_b,
                scale=fc.clear_scale,
                kl=fc.clear_kl,
                duplicate_mask=dup,
            )
        else:
            loss = info_nce(q, d, tau=fc.tau, negatives=negatives, duplicate_mask=dup)
            parts["infonce"] = float(loss.detach())
        if fc.align_weight > 0:
            align = alignment_inputs(batch, fc.align_sources)
            parts["align_rows"] = float(len(align.rows))
            if align.rows:
                target = sources(align.target)
                english = sources(align.english)
                mixed = q[torch.tensor(align.rows, device=stage.device)]
                al, al_parts = alignment_loss(mixed, target, english)
                parts.update(al_parts)
                parts["align"] = float(al.detach())
                loss = loss + fc.align_weight * al
        if teacher is not None and inputs.optical_rows:
            rows = inputs.optical_rows
            t_enc = stage.tokenize([inputs.q_en[i] for i in rows], mc.query_prefix)
            with torch.no_grad():
                t_hidden = stage.forward(t_enc, model=teacher)
            idx = torch.tensor(rows, device=stage.device)
            # Special tokens carry no word to align; padding carries nothing at all.
            s_mask = q_enc["attention_mask"].bool() & ~q_enc["special_tokens_mask"].bool()
            t_mask = t_enc["attention_mask"].bool() & ~t_enc["special_tokens_mask"].bool()
            ot = optical_loss(
                q_hidden[idx],
                s_mask[idx],
                t_hidden,
                t_mask,
                epsilon=fc.optical_epsilon,
                iterations=fc.optical_iterations,
            )
            parts["optical"] = float(ot.detach())
            loss = loss + fc.optical_weight * ot
        return loss, parts

    return step
