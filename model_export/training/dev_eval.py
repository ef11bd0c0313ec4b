"""A dev split of the training pairs, retrieval metrics on it, and the best checkpoint by them.

2403.01364's official code keeps the fine-tuning checkpoint with the best dev top-10 hit rate;
the trainer does the same with these pieces:

* `split_dev` holds out pairs by a SHA-256 hash of (seed, query, label), so a pair lands on the
  same side whatever the order of the files or the `max_pairs` sample, and a resumed run splits
  exactly as the first one did.
* `DevEvaluator` ranks the dev set's distinct labels for each dev query by cosine and returns
  `{"R@1": ..., "hit@10": ...}`.
* `BestKeeper` remembers the best evaluation and a CPU copy of the weights it was measured on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_export.training.data import Pair

# (last hidden states [B, L, H], attention mask [B, L]) -> sentence vectors [B, H]
PoolFn = Callable[[Tensor, Tensor], Tensor]
METRICS = ("R@1", "hit@10")


def _unit_hash(pair: Pair, seed: int) -> float:
    """A number in [0, 1) fixed by the pair's text and the seed (not Python's salted hash)."""
    key = f"{seed}\x1f{pair.query}\x1f{pair.label}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def split_dev(
    pairs: Sequence[Pair], fraction: float, seed: int, max_dev: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """(train, dev): a pair is dev when its hash is below `fraction`.

    With `max_dev` > 0 only the `max_dev` lowest hashes stay dev (a threshold on the hash, so
    still independent of the order) and the rest go back to training. Train keeps the input
    order; dev is in hash order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"dev fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(pairs), []
    keys = [_unit_hash(p, seed) for p in pairs]
    below = sorted(k for k in keys if k < fraction)
    # Inclusive cut-off: identical pairs share a hash, so they also share a side.
    cut = below[max_dev - 1] if 0 < max_dev < len(below) else fraction
    is_dev = [k < fraction and k <= cut for k in keys]
    train = [p for p, d in zip(pairs, is_dev, strict=True) if not d]
    dev = sorted((k, i) for i, (k, d) in enumerate(zip(keys, is_dev, strict=True)) if d)
    return train, [pairs[i] for _, i in dev]


def _label_key(label: str) -> str:
    # The same normalisation as the trainer's duplicate mask: these are one candidate.
    return " ".join(label.casefold().split())


def rank_metrics(scores: Tensor, gold: Tensor) -> dict[str, float]:
    """R@1 and hit@10 from query x candidate scores [Q, C] and each query's gold column [Q].

    A candidate scoring the same as the gold one counts as ranked above it, so a collapsed
    encoder (every vector alike) scores 0, not 1.
    """
    gold_scores = scores.gather(1, gold[:, None])
    rank = (scores >= gold_scores).sum(dim=1) - 1  # 0 = first
    return {
        "R@1": float((rank < 1).float().mean()),
        "hit@10": float((rank < 10).float().mean()),
    }


class DevEvaluator:
    """Encodes dev queries (query prefix) and their distinct labels (passage prefix), ranks."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        tokenizer: Any,
        pool: PoolFn,
        *,
        query_prefix: str = "",
        passage_prefix: str = "",
        max_length: int = 128,
        batch_size: int = 64,
        device: torch.device | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("DevEvaluator needs at least one dev pair")
        self.tokenizer = tokenizer
        self.pool = pool
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device or torch.device("cpu")
        self.queries = [p.query for p in pairs]
        self.candidates: list[str] = []
        column: dict[str, int] = {}
        gold: list[int] = []
        for p in pairs:
            key = _label_key(p.label)
            if key not in column:
                column[key] = len(self.candidates)
                self.candidates.append(p.label)
            gold.append(column[key])
        self.gold = torch.tensor(gold)

    def encode(self, model: nn.Module, texts: list[str], prefix: str) -> Tensor:
        """L2-normalised sentence vectors [N, H] (fp32, on the CPU)."""
        vectors: list[Tensor] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                [prefix + t for t in texts[start : start + self.batch_size]],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            enc = {k: v.to(self.device) for k, v in enc.items()}
            hidden: Tensor = model(**enc).last_hidden_state
            pooled = self.pool(hidden.float(), enc["attention_mask"])
            vectors.append(F.normalize(pooled, dim=-1).cpu())
        return torch.cat(vectors)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()  # no dropout: the same weights always score the same
        try:
            with torch.no_grad():
                q = self.encode(model, self.queries, self.query_prefix)
                c = self.encode(model, self.candidates, self.passage_prefix)
        finally:
            model.train(was_training)
        return rank_metrics(q @ c.T, self.gold)


class BestKeeper:
    """The best evaluation so far by `metric` (ties broken by the other metric, then the
    earlier one wins) and, with `keep_state`, a CPU copy of the weights it was measured on."""

    def __init__(self, metric: str, keep_state: bool = True) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown dev metric {metric!r}; one of {list(METRICS)}")
        self.metric = metric
        self.keep_state = keep_state
        self.entry: dict[str, Any] | None = None
        self.state: dict[str, Tensor] | None = None

    def _key(self, entry: dict[str, Any]) -> tuple[float, ...]:
        return (entry[self.metric], *(entry[m] for m in METRICS if m != self.metric))

    def update(self, entry: dict[str, Any], model: nn.Module) -> bool:
        """Keep `entry` (and the model's weights) if it beats the best so far."""
        if self.entry is not None and self._key(entry) <= self._key(self.entry):
            return False
        self.entry = dict(entry)
        if self.keep_state:
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights into `model`; False when none were kept."""
        if self.state is None:
            return False
        model.load_state_dict(self.state)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any] | None) -> None:
        saved = saved or {}
        self.entry = saved.get("entry")
        state = saved.get("state")
        self.state = None if state is None else {k: v.cpu() for k, v in state.items()}
