"""OPTICAL-style optimal-transport distillation of token representations.

Optimises: `<P, C>` (Frobenius inner product), where `C[i, j] = 1 - cos(s_i, t_j)` compares the
student's token i (model being trained, on the code-switched or translated sentence) with the
teacher's token j (frozen base model, on the original sentence), and `P` is the entropic optimal
transport plan between the two token sets with uniform mass on real tokens, computed by log-domain
Sinkhorn. No word alignment is needed, only the sentence pair. The plan is treated as a
constant (it is the argmin of the OT problem, so by the envelope theorem the gradient of the OT
cost w.r.t. C is P itself).

Input: student tokens [B, Ls, H] with mask [B, Ls], teacher tokens [B, Lt, H] with mask [B, Lt]
(masks False on padding and on special tokens you want left out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_NEG = -1e9


def sinkhorn(
    cost: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    *,
    epsilon: float = 0.1,
    iterations: int = 50,
) -> Tensor:
    """Entropic OT plan for cost [B, N, M] and log marginals [B, N], [B, M] (log domain)."""
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(iterations):
        f = epsilon * (log_a - torch.logsumexp((g[:, None, :] - cost) / epsilon, dim=2))
        g = epsilon * (log_b - torch.logsumexp((f[:, :, None] - cost) / epsilon, dim=1))
    return torch.exp((f[:, :, None] + g[:, None, :] - cost) / epsilon)


def _log_uniform(mask: Tensor) -> Tensor:
    m = mask.float()
    counts = m.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.where(mask.bool(), torch.log(m / counts).clamp(min=_NEG), torch.full_like(m, _NEG))


def optical_loss(
    student: Tensor,
    student_mask: Tensor,
    teacher: Tensor,
    teacher_mask: Tensor,
    *,
    epsilon: float = 0.1,
    iterations: int = 50,
) -> Tensor:
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    cost = 1.0 - s @ t.transpose(1, 2)
    with torch.no_grad():
        plan = sinkhorn(
            cost.detach(),
            _log_uniform(student_mask),
            _log_uniform(teacher_mask),
            epsilon=epsilon,
            iterations=iterations,
        )
    return (plan * cost).sum(dim=(1, 2)).mean()


class OpticalLoss(nn.Module):
    def __init__(self, epsilon: float = 0.1, iterations: int = 50) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.iterations = iterations

    def forward(
        self, student: Tensor, student_mask: Tensor, teacher: Tensor, teacher_mask: Tensor
    ) -> Tensor:
        return optical_loss(
            student,
            student_mask,
            teacher,
            teacher_mask,
            epsilon=self.epsilon,
            iterations=self.iterations,
        )
