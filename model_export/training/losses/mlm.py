"""Masked language modelling on (code-switched) text.

Optimises: cross-entropy of the original token at masked positions, predicted from the
encoder's last hidden states by a BERT-style head (dense + GELU + LayerNorm + decoder tied to
the input embeddings). BERT's corruption: 15% of non-special tokens are chosen; of those 80%
become `[MASK]`, 10% a random token, 10% stay.

Input: `mask_tokens` takes input ids [B, L] and a special-tokens mask [B, L] and returns the
corrupted ids and labels (-100 where not chosen). `mlm_loss` takes hidden states [B, L, H] and
those labels; it runs the head only on chosen positions, because full logits over e5's 250k
vocabulary would be B*L*250k floats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE = -100


def mask_tokens(
    input_ids: Tensor,
    special_tokens_mask: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    ids = input_ids.clone()
    labels = input_ids.clone()
    gen_device = generator.device if generator is not None else ids.device

    def rand(shape: torch.Size) -> Tensor:
        return torch.rand(shape, generator=generator, device=gen_device).to(ids.device)

    chosen = (rand(ids.shape) < probability) & ~special_tokens_mask.bool()
    labels[~chosen] = IGNORE
    to_mask = chosen & (rand(ids.shape) < 0.8)
    # half of the remaining 20%: random token
    to_random = chosen & ~to_mask & (rand(ids.shape) < 0.5)
    ids[to_mask] = mask_token_id
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator, device=gen_device)
    ids[to_random] = random_ids.to(ids.device)[to_random]
    return ids, labels


class MLMHead(nn.Module):
    """BERT's prediction head with the decoder tied to the encoder's word embeddings."""

    def __init__(self, word_embeddings: nn.Embedding, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        hidden = word_embeddings.embedding_dim
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.word_embeddings = word_embeddings
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.dense(hidden)))
        return F.linear(h, self.word_embeddings.weight, self.bias)


def mlm_loss(head: MLMHead, hidden: Tensor, labels: Tensor) -> Tensor:
    chosen = labels != IGNORE
    if not bool(chosen.any()):
        # A batch where nothing got masked contributes no gradient, but keeps the graph alive.
        return hidden.sum() * 0.0
    # fp32 head: the hidden states may come out of a bf16 autocast region
    logits = head(hidden[chosen].float())
    return F.cross_entropy(logits, labels[chosen])
