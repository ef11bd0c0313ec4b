"""The continual pre-training objective of 2403.01364.

Optimises: `w_mlm * (MLM(query) + MLM(label)) + L_sim`, where both MLM terms are computed on
code-switched text and `L_sim` is in-batch InfoNCE between the pooled query and label vectors,
`CE(cos(q, l) / tau)` with tau = 0.05. `w_mlm` is 0.1 in the official code (0.2 in the paper's
summary). With `similarity=False` (the paper's ablation) only the weighted MLM terms remain.

Input: the two MLM losses (scalars from `mlm.mlm_loss`), query and label embeddings [B, H] and
an optional duplicate mask [B, B] (see `infonce`).
"""

from __future__ import annotations

from torch import Tensor, nn

from model_export.training.losses.infonce import info_nce


class ContinualPretrainingLoss(nn.Module):
    def __init__(self, mlm_weight: float = 0.1, tau: float = 0.05, similarity: bool = True) -> None:
        super().__init__()
        self.mlm_weight = mlm_weight
        self.tau = tau
        self.similarity = similarity

    def forward(
        self,
        mlm_query: Tensor,
        mlm_label: Tensor,
        q: Tensor,
        label: Tensor,
        duplicate_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        mlm = self.mlm_weight * (mlm_query + mlm_label)
        parts = {"mlm_query": float(mlm_query.detach()), "mlm_label": float(mlm_label.detach())}
        if not self.similarity:
            return mlm, parts
        sim = info_nce(q, label, tau=self.tau, duplicate_mask=duplicate_mask)
        parts["sim"] = float(sim.detach())
        return mlm + sim, parts
