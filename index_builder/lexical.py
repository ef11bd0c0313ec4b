"""Sparse lexical vectors: exact tokens (PayPal, an order number) that a dense vector blurs.

A text's sparse vector is its subword ids from the served model's own tokenizer (the
`tokenizer.json` exported beside the graph, so any language it reads is covered, no word
splitting of our own), after NFKC case folding so "PayPal" and "paypal" meet. An FAQ entry
(question + answer) gets BM25's term-frequency weights (k1, b, with the document length relative
to the collection's average); a query gets 1 per distinct token. The collection's sparse vector
is declared with Qdrant's IDF modifier, so Qdrant multiplies each shared token by its inverse
document frequency at query time: the score is BM25. `idf` is the same formula, for the
embedded matrix search (`index_builder.store.matrix`) and the offline evaluation.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

K1 = 1.2
B = 0.75
# Ids that carry no word: sentencepiece's lone word-start marker ("▁", XLM-R id 6) and the
# specials; dropped so that every text does not share them.
_NO_WORD_TOKENS = ("▁",)

Tokenize = Callable[[list[str]], list[list[int]]]


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
    length = len(tokens)
    norm = K1 * (1.0 - B + B * length / avg_len) if avg_len > 0 else K1
    ids = sorted(counts)
    return SparseDoc(tuple(ids), tuple(counts[i] * (K1 + 1.0) / (counts[i] + norm) for i in ids))


class Lexicon:
    """Turns texts into sparse vectors with one tokenizer."""

    def __init__(self, tokenize: Tokenize, name: str) -> None:
        self._tokenize = tokenize
        self.name = name

    @classmethod
    def for_encoder(cls, encoder: Any) -> Lexicon:
        """The lexicon of an encoder: its `tokenizers.Tokenizer`."""
        return cls(_subwords(encoder.tokenizer), "subword")

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        return self._tokenize([fold(t) for t in texts]) if texts else []

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


def _subwords(tokenizer: Any) -> Tokenize:
    skip = {i for t in _NO_WORD_TOKENS if (i := tokenizer.token_to_id(t)) is not None}

    def tokenize(texts: list[str]) -> list[list[int]]:
        encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
        return [[i for i in e.ids if i not in skip] for e in encodings]

    return tokenize
