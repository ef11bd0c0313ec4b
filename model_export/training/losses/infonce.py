"""In-batch InfoNCE (multiple-negatives ranking loss).

Optimises: each query's cosine similarity to its own label, divided by a temperature tau
(0.05 in 2403.01364), against the similarities to every other label in the batch and, when
given, to hard-negative labels: `CE(cos(q_i, [d_1..d_B, n_1..n_M]) / tau, target=i)`.

Input: query embeddings `q` [B, H], label embeddings `d` [B, H] (row i is q_i's positive),
optional hard negatives `negatives` [M, H], optional `duplicate_mask` [B, B] (True where label j
is the same text as label i, j != i) so a repeated label is not counted as a negative.
Embeddings need not be normalised; the loss normalises them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def similarity_logits(q: Tensor, d: Tensor, tau: float, negatives: Tensor | None = None) -> Tensor:
    q = F.normalize(q.float(), dim=-1)
    docs = d if negatives is None else torch.cat([d, negatives], dim=0)
    return q @ F.normalize(docs.float(), dim=-1).T / tau


def info_nce(
    q: Tensor,
    d: Tensor,
    *,
    tau: float = 0.05,
    negatives: Tensor | None = None,
    duplicate_mask: Tensor | None = None,
) -> Tensor:
    logits = similarity_logits(q, d, tau, negatives)
    if duplicate_mask is not None:
        pad = logits.new_zeros(
            (logits.shape[0], logits.shape[1] - duplicate_mask.shape[1]), dtype=torch.bool
        )
        logits = logits.masked_fill(torch.cat([duplicate_mask, pad], dim=1), float("-inf"))
    target = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, target)


class InfoNCELoss(nn.Module):
    def __init__(self, tau: float = 0.05) -> None:
        super().__init__()
        self.tau = tau

    def forward(
        self,
        q: Tensor,
        d: Tensor,
        negatives: Tensor | None = None,
        duplicate_mask: Tensor | None = None,
    ) -> Tensor:
        return info_nce(q, d, tau=self.tau, negatives=negatives, duplicate_mask=duplicate_mask)
