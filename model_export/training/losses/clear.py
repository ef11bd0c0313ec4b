"""CLEAR reverse training (`dltmddbs100/CLEAR`).

Optimises: `L = (1-a-b) * L_fwd + a * L_rev + b * KL(P_rev || P_fwd)` with
`L_fwd = CE(s * cos(q_en, [d+, d-]))` (English query -> its passage among the batch's passages
and hard negatives) and `L_rev = CE(s * cos(d+, [q_tgt+, q_tgt-]))` (passage -> its
target-language query among the batch's target queries and their negatives); the English
passage is the bridge between languages. s = 20, a = 0.4, b = 0.2. The KL term pulls the
passage->target-query distribution towards the English query->passage one, over the in-batch
columns both share.

Input: `q_en` [B, H] English queries, `q_tgt` [B, H] their target-language (translated or
code-switched) versions, `d_pos` [B, H] passages, optional `d_neg` [M, H] hard-negative passages
and `q_tgt_neg` [K, H] negative target queries, optional `duplicate_mask` [B, B].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def clear_loss(
    q_en: Tensor,
    q_tgt: Tensor,
    d_pos: Tensor,
    *,
    d_neg: Tensor | None = None,
    q_tgt_neg: Tensor | None = None,
    a: float = 0.4,
    b: float = 0.2,
    scale: float = 20.0,
    kl: bool = True,
    duplicate_mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    n = q_en.shape[0]
    target = torch.arange(n, device=q_en.device)
    docs = d_pos if d_neg is None else torch.cat([d_pos, d_neg])
    queries = q_tgt if q_tgt_neg is None else torch.cat([q_tgt, q_tgt_neg])
    fwd_logits = scale * _cos(q_en, docs)
    rev_logits = scale * _cos(d_pos, queries)
    if duplicate_mask is not None:
        fwd_logits[:, :n] = fwd_logits[:, :n].masked_fill(duplicate_mask, float("-inf"))
        rev_logits[:, :n] = rev_logits[:, :n].masked_fill(duplicate_mask, float("-inf"))
    l_fwd = F.cross_entropy(fwd_logits, target)
    l_rev = F.cross_entropy(rev_logits, target)
    loss = (1.0 - a - b) * l_fwd + a * l_rev
    parts = {"fwd": float(l_fwd.detach()), "rev": float(l_rev.detach())}
    if kl and b > 0:
        log_p_fwd = F.log_softmax(fwd_logits[:, :n], dim=-1)
        log_p_rev = F.log_softmax(rev_logits[:, :n], dim=-1)
        # KL(P_rev || P_fwd); masked (-inf) columns have zero probability on both sides.
        p_rev = log_p_rev.exp()
        diff = torch.where(p_rev > 0, log_p_rev - log_p_fwd, torch.zeros_like(p_rev))
        kl_term = (p_rev * diff).sum(-1).mean()
        loss = loss + b * kl_term
        parts["kl"] = float(kl_term.detach())
    else:
        loss = loss + b * l_fwd  # without KL, its weight goes back to the forward loss
    return loss, parts


class CLEARLoss(nn.Module):
    def __init__(
        self, a: float = 0.4, b: float = 0.2, scale: float = 20.0, kl: bool = True
    ) -> None:
        super().__init__()
        self.a, self.b, self.scale, self.kl = a, b, scale, kl

    def forward(
        self,
        q_en: Tensor,
        q_tgt: Tensor,
        d_pos: Tensor,
        d_neg: Tensor | None = None,
        q_tgt_neg: Tensor | None = None,
        duplicate_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        return clear_loss(
            q_en,
            q_tgt,
            d_pos,
            d_neg=d_neg,
            q_tgt_neg=q_tgt_neg,
            a=self.a,
            b=self.b,
            scale=self.scale,
            kl=self.kl,
            duplicate_mask=duplicate_mask,
        )
