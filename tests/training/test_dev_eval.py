from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from model_export.training.data import Pair
from model_export.training.dev_eval import BestKeeper, DevEvaluator, rank_metrics, split_dev

PAIRS = [Pair(f"query {i}", f"label {i % 40}", "en", "test") for i in range(1000)]


def test_split_dev_is_stable_disjoint_and_near_the_fraction() -> None:
    train, dev = split_dev(PAIRS, 0.2, seed=13)
    assert set(train).isdisjoint(dev) and len(train) + len(dev) == len(PAIRS)
    assert set(train) | set(dev) == set(PAIRS)
    assert 150 <= len(dev) <= 250
    shuffled = list(PAIRS)
    random.Random(0).shuffle(shuffled)
    train2, dev2 = split_dev(shuffled, 0.2, seed=13)
    assert dev2 == dev  # same pairs, same (hash) order, whatever the input order
    assert set(train2) == set(train)
    # a sample of the pairs (data.max_pairs) splits each pair the same way as the whole
    sample = shuffled[:300]
    assert set(split_dev(sample, 0.2, seed=13)[1]) == set(dev) & set(sample)
    # the seed is part of the hash
    assert set(split_dev(PAIRS, 0.2, seed=14)[1]) != set(dev)
    assert split_dev(PAIRS, 0.0, seed=13) == (PAIRS, [])
    with pytest.raises(ValueError, match="fraction"):
        split_dev(PAIRS, 1.0, seed=13)


def test_split_dev_is_the_same_in_every_process() -> None:
    # A resumed run splits again: the split must not depend on Python's per-process hash salt
    # (nor change between releases without notice: resumed runs would train on dev pairs).
    dev = split_dev(PAIRS[:40], 0.2, seed=13)[1]
    assert [p.query for p in dev] == ["query 14", "query 23", "query 37", "query 4"]


def test_split_dev_cap_sends_the_rest_back_to_training() -> None:
    _, dev = split_dev(PAIRS, 0.2, seed=13)
    train, capped = split_dev(PAIRS, 0.2, seed=13, max_dev=50)
    assert capped == dev[:50] and len(train) == len(PAIRS) - 50


def test_rank_metrics_counts_ties_against_the_gold_label() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.9], [0.5, 0.5, 0.5]])
    m = rank_metrics(scores, torch.tensor([0, 1, 2]))
    assert m["R@1"] == pytest.approx(1 / 3)
    # 3 candidates: the gold label is always in the top 10
    assert m["hit@10"] == 1.0
    many = torch.zeros(1, 12)
    many[0, 0] = -1.0  # gold ranks last of 12
    assert rank_metrics(many, torch.tensor([0])) == {"R@1": 0.0, "hit@10": 0.0}


def _mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir: Path) -> tuple[nn.Module, object]:
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(tiny_bert_dir), AutoTokenizer.from_pretrained(tiny_bert_dir)


TEXTS = [
    "where is my order",
    "how do i change my shipping address",
    "dónde está mi pedido",
    "wo ist meine bestellung",
    "the quick brown fox",
]


def test_dev_evaluator_ranks_by_cosine(tiny: tuple[nn.Module, object]) -> None:
    model, tok = tiny
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # label == query text and no prefixes: each query's own label is its nearest candidate
    same = [Pair(t, t) for t in TEXTS]
    ev = DevEvaluator(same, tok, _mean_pool, batch_size=2)
    assert ev(model) == {"R@1": 1.0, "hit@10": 1.0}
    assert model.training  # back in train mode
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the first two swap labels: their nearest candidate is now the wrong one
    swapped = [Pair(TEXTS[0], TEXTS[1]), Pair(TEXTS[1], TEXTS[0]), *same[2:]]
    m = DevEvaluator(swapped, tok, _mean_pool)(model)
    assert m == {"R@1": pytest.approx(3 / 5), "hit@10": 1.0}
    # batching does not change the result
    assert DevEvaluator(swapped, tok, _mean_pool, batch_size=1)(model) == m


def test_dev_evaluator_candidates_are_the_distinct_labels(
    tiny: tuple[nn.Module, object],
) -> None:
    _, tok = tiny
    pairs = [Pair("a", "Label One"), Pair("b", "label  one"), Pair("c", "Label Two")]
    ev = DevEvaluator(pairs, tok, _mean_pool, query_prefix="query: ", passage_prefix="p: ")
    assert ev.candidates == ["Label One", "Label Two"]
    assert ev.gold.tolist() == [0, 0, 1]
    with pytest.raises(ValueError):
        DevEvaluator([], tok, _mean_pool)


def _model_at(value: float) -> nn.Module:
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_best_keeper_restores_the_best_state_not_the_last() -> None:
    keeper = BestKeeper("hit@10")
    model = _model_at(0.0)
    history = [(0.5, 0.1), (0.8, 0.2), (0.7, 0.9), (0.8, 0.2), (0.8, 0.3), (0.6, 0.5)]
    for step, (hit, r1) in enumerate(history):
        with torch.no_grad():
            model.weight.fill_(float(step))
        keeper.update({"stage": "finetune", "step": step, "hit@10": hit, "R@1": r1}, model)
    # hit@10 0.8 first at step 1; step 3 only ties; step 4 ties on hit@10 and has a better R@1
    assert keeper.entry is not None and keeper.entry["step"] == 4
    assert keeper.restore(model)
    assert torch.equal(model.weight, torch.full((2, 2), 4.0))
    # the copy is not a view of the live weights
    with torch.no_grad():
        model.weight.fill_(9.0)
    assert keeper.state is not None and torch.equal(keeper.state["weight"], torch.full((2, 2), 4.0))

    # a checkpoint round trip (resume) keeps both the entry and the weights
    resumed = BestKeeper("hit@10")
    resumed.load_state_dict(keeper.state_dict())
    assert resumed.entry == keeper.entry
    other = _model_at(-1.0)
    assert resumed.restore(other) and torch.equal(other.weight, torch.full((2, 2), 4.0))
    # a worse later evaluation does not replace it
    assert not resumed.update({"step": 9, "hit@10": 0.1, "R@1": 0.1}, _model_at(7.0))


def test_best_keeper_by_r1_and_without_state() -> None:
    keeper = BestKeeper("R@1", keep_state=False)
    keeper.update({"step": 0, "hit@10": 0.9, "R@1": 0.1}, _model_at(0.0))
    keeper.update({"step": 1, "hit@10": 0.5, "R@1": 0.2}, _model_at(1.0))
    assert keeper.entry is not None and keeper.entry["step"] == 1
    assert not keeper.restore(_model_at(3.0)) and keeper.state is None
    with pytest.raises(ValueError, match="unknown dev metric"):
        BestKeeper("mrr")
