from __future__ import annotations

import math

import pytest
import torch

from model_export.training.losses import (
    ContinualPretrainingLoss,
    MLMHead,
    clear_loss,
    info_nce,
    mask_tokens,
    mlm_loss,
    optical_loss,
    sinkhorn,
)
from model_export.training.losses.mlm import IGNORE


def test_infonce_orthogonal_embeddings() -> None:
    b = 4
    q = torch.eye(b, 8)
    # positives identical (cos 1), negatives orthogonal (cos 0): logits 1/tau on the diagonal
    # (tau 0.5 rather than 0.05 so the value is not lost to fp32 rounding: log(1 + 3e-9))
    expected = -math.log(math.exp(2) / (math.exp(2) + (b - 1)))
    assert float(info_nce(q, q.clone(), tau=0.5)) == pytest.approx(expected, rel=1e-5)
    # swapping two labels puts cos 0 on those rows' positives and 1/tau on a negative
    d = q[[1, 0, 2, 3]]
    wrong = -math.log(1 / (math.exp(2) + (b - 1)))
    assert float(info_nce(q, d, tau=0.5)) == pytest.approx((2 * wrong + 2 * expected) / 4, rel=1e-5)
    # at tau 0.05 a wrong positive costs about 1/tau
    assert float(info_nce(q, d, tau=0.05)) == pytest.approx(2 * 20 / 4, rel=1e-3)


def test_infonce_hard_negative_and_duplicates() -> None:
    q = torch.eye(2, 4)
    d = q.clone()
    base = float(info_nce(q, d, tau=1.0))
    # a hard negative identical to query 0 adds an e^1 term to row 0 only
    with_neg = float(info_nce(q, d, tau=1.0, negatives=q[:1]))
    row0 = -math.log(math.e / (math.e + 1 + math.e))
    row1 = -math.log(math.e / (math.e + 1 + 1))
    assert with_neg == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert with_neg > base
    # masking the only negative leaves a single candidate: loss 0
    dup = torch.tensor([[False, True], [True, False]])
    assert float(info_nce(q, d, tau=1.0, duplicate_mask=dup)) == pytest.approx(0.0, abs=1e-6)


def test_mask_tokens_rates_and_specials() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 100, (200, 100), generator=gen)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    masked, labels = mask_tokens(
        ids, special, mask_token_id=3, vocab_size=100, probability=0.15, generator=gen
    )
    chosen = labels != IGNORE
    assert not chosen[:, 0].any()  # special tokens never chosen
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])
    rate = chosen.float().sum() / (~special).sum()
    assert float(rate) == pytest.approx(0.15, abs=0.01)
    n = int(chosen.sum())
    as_mask = int((masked[chosen] == 3).sum())
    kept = int((masked[chosen] == ids[chosen]).sum())
    assert as_mask / n == pytest.approx(0.8, abs=0.03)
    # kept = 10% + random draws that hit the original token (1/100 of 10%)
    assert kept / n == pytest.approx(0.1, abs=0.03)


def test_mlm_loss_only_on_chosen_positions() -> None:
    emb = torch.nn.Embedding(50, 8)
    head = MLMHead(emb)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    labels = torch.full((2, 5), IGNORE)
    assert float(mlm_loss(head, hidden, labels).detach()) == 0.0
    labels[0, 2] = 7
    logits = head(hidden[0, 2])
    expected = torch.nn.functional.cross_entropy(logits[None], torch.tensor([7]))
    assert float(mlm_loss(head, hidden, labels).detach()) == pytest.approx(
        float(expected.detach()), rel=1e-5
    )
    # decoder is tied to the embedding matrix
    assert head.word_embeddings.weight is emb.weight


def test_continual_pretraining_combination() -> None:
    q = torch.eye(3, 4)
    sim = float(info_nce(q, q, tau=0.05))
    mq, ml = torch.tensor(2.0), torch.tensor(4.0)
    loss, parts = ContinualPretrainingLoss(mlm_weight=0.1)(mq, ml, q, q)
    assert float(loss) == pytest.approx(0.1 * 6.0 + sim, rel=1e-5)
    assert parts["sim"] == pytest.approx(sim, rel=1e-5)
    no_sim, parts = ContinualPretrainingLoss(mlm_weight=0.2, similarity=False)(mq, ml, q, q)
    assert float(no_sim) == pytest.approx(1.2)
    assert "sim" not in parts


def test_clear_loss_weights() -> None:
    torch.manual_seed(0)
    q_en, q_tgt, d = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    total, parts = clear_loss(q_en, q_tgt, d, a=0.4, b=0.2, scale=20.0)
    expected = 0.4 * parts["fwd"] + 0.4 * parts["rev"] + 0.2 * parts["kl"]
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert parts["kl"] >= 0
    # identical forward and reverse similarity structure: KL is zero
    x = torch.randn(4, 6)
    _, same = clear_loss(x, x, x)
    assert same["kl"] == pytest.approx(0.0, abs=1e-5)
    fwd_only, p = clear_loss(q_en, q_tgt, d, a=0.0, b=0.0)
    assert float(fwd_only) == pytest.approx(p["fwd"], rel=1e-5)


def test_sinkhorn_marginals_and_plan() -> None:
    cost = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    log_u = torch.log(torch.full((1, 2), 0.5))
    plan = sinkhorn(cost, log_u, log_u, epsilon=0.01, iterations=100)
    assert torch.allclose(plan, torch.tensor([[[0.5, 0.0], [0.0, 0.5]]]), atol=1e-4)
    flat = sinkhorn(torch.zeros(1, 2, 3), log_u, torch.log(torch.full((1, 3), 1 / 3)))
    assert torch.allclose(flat, torch.full((1, 2, 3), 1 / 6), atol=1e-5)


def test_optical_loss_zero_for_permuted_tokens_and_masks_padding() -> None:
    t = torch.nn.functional.normalize(torch.randn(1, 3, 8), dim=-1)
    s = t[:, [2, 0, 1]]  # same tokens, other order: transport finds the matching
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert float(optical_loss(s, mask, t, mask, epsilon=0.01, iterations=200)) < 1e-3
    # padding (garbage vectors, masked out) does not change the loss
    s_pad = torch.cat([s, torch.randn(1, 2, 8)], dim=1)
    m_pad = torch.tensor([[True, True, True, False, False]])
    padded = optical_loss(s_pad, m_pad, t, mask, epsilon=0.01, iterations=200)
    assert float(padded) < 1e-3
    # opposite vectors cost 2 each
    assert float(optical_loss(-t[:, :1], mask[:, :1], t[:, :1], mask[:, :1])) == pytest.approx(2.0)
    s_req = s.clone().requires_grad_(True)
    optical_loss(s_req + 0.1, mask, t, mask).backward()
    assert s_req.grad is not None and s_req.grad.abs().sum() > 0
