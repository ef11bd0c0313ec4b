"""Code-mixed alignment ("Neither Here Nor There", arXiv 2603.19771).

Optimises: the cosine distance of each code-switched text's embedding to *both* of its
monolingual sources, `mean_i [(1 - cos(m_i, t_i)) + (1 - cos(m_i, e_i))] / 2`, where `m_i` is
the code-mixed text, `t_i` the target-language sentence it was made from (or translates) and
`e_i` the English one. The paper finds code-mixed representations loosely tied to either
language and drawn towards English; grounding them in both at once is its remedy. Here it is
the retrieval penalty that it targets: a target-language query with English words in it should
land where the fully translated query lands, and where the English query lands.

The sources are targets, not parameters of the loss: the caller encodes them without gradient
(`torch.no_grad`), so the term moves the mixed text towards its sources and never the sources
towards the mixed text (which, per the paper, is how code-mixed training costs the alignment of
the two monolingual languages). The minimum of the two distances is reached between the two
sources, the normalised mean of `t_i` and `e_i`, not at either one. Discrimination between
sentences is left to the retrieval loss of the same step; this term is a regression onto the
model's own monolingual embeddings, as in multilingual knowledge distillation (MSE on unit
vectors is twice this distance).

Input: `mixed` [K, H] embeddings of the code-switched texts (with gradient), `target` [K, H]
and `english` [K, H] embeddings of their sources, row i of each describing the same sentence.
Embeddings need not be normalised. Returns the scalar loss and its two sides' mean distances.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def alignment_loss(
    mixed: Tensor, target: Tensor, english: Tensor
) -> tuple[Tensor, dict[str, float]]:
    if not (mixed.shape == target.shape == english.shape) or mixed.ndim != 2:
        raise ValueError(
            f"alignment_loss needs three [K, H] tensors of one shape, got {tuple(mixed.shape)}, "
            f"{tuple(target.shape)}, {tuple(english.shape)}"
        )
    m = F.normalize(mixed.float(), dim=-1)
    to_target = 1.0 - (m * F.normalize(target.float(), dim=-1)).sum(-1)
    to_english = 1.0 - (m * F.normalize(english.float(), dim=-1)).sum(-1)
    loss = 0.5 * (to_target.mean() + to_english.mean())
    parts = {
        "align_target": float(to_target.detach().mean()),
        "align_english": float(to_english.detach().mean()),
    }
    return loss, parts


class AlignmentLoss(nn.Module):
    def forward(
        self, mixed: Tensor, target: Tensor, english: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        return alignment_loss(mixed, target, english)
