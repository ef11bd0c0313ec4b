"""Sparse lexical vectors: exact tokens (PayPal, an order number) that a dense vector blurs.

A text's tokens are its subword ids from the served model's own tokenizer, after NFKC case
folding. An entry gets BM25's term-frequency weights and a query 1 per distinct token; the index
applies the IDF (`idf`, Qdrant's modifier) at query time, so the score is BM25.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

K1 = 1.2
B = 0.75
# Ids that carry no word: sentencepiece's lone word-start marker ("▁", XLM-R id 6) and the
# specials; dropped so that every text does not share them.
_NO_WORD_TOKENS = ("▁",)


@dataclass(frozen=True)
class SparseDoc:
    """One entry's sparse vector: token ids (ascending) and their BM25 tf weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def idf(df: int, n: int) -> float:
    """Qdrant's IDF modifier: ln((n - df + 0.5) / (df + 0.5) + 1)."""
    return math.log((n - df + 0.5) / (df + 0.5) + 1.0)


def bm25_doc(tokens: Sequence[int], avg_len: float) -> SparseDoc:
    """BM25's term-frequency part of one document (the IDF part is the index's)."""
    counts = Counter(tokens)
    norm = K1 * (1.0 - B + B * len(tokens) / avg_len) if avg_len > 0 else K1
    ids = sorted(counts)
    return SparseDoc(tuple(ids), tuple(counts[i] * (K1 + 1.0) / (counts[i] + norm) for i in ids))


class Lexicon:
    """Turns texts into sparse vectors with an encoder's `tokenizers.Tokenizer`."""

    name = "subword"

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._skip = {i for t in _NO_WORD_TOKENS if (i := tokenizer.token_to_id(t)) is not None}

    @classmethod
    def for_encoder(cls, encoder: Any) -> Lexicon:
        return cls(encoder.tokenizer)

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        folded = [fold(t) for t in texts]
        encodings = self._tokenizer.encode_batch(folded, add_special_tokens=False)
        return [[i for i in e.ids if i not in self._skip] for e in encodings]

    def query(self, text: str) -> tuple[int, ...]:
        """A query's distinct token ids, ascending (each weighs 1)."""
        return self.queries([text])[0]

    def queries(self, texts: Sequence[str]) -> list[tuple[int, ...]]:
        return [tuple(sorted(set(t))) for t in self.tokens(texts)]

    def documents(
        self, texts: Sequence[str], avg_len: float | None = None
    ) -> tuple[list[SparseDoc], float]:
        """BM25-weighted sparse vectors of `texts` and the average length they were weighted
        with: `avg_len` when given (an edit to a built collection), else theirs."""
        tokens = self.tokens(texts)
        if avg_len is None:
            avg_len = sum(len(t) for t in tokens) / max(1, len(tokens))
        return [bm25_doc(t, avg_len) for t in tokens], avg_len
