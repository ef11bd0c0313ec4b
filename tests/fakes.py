"""Test doubles, kept out of the product: a deterministic encoder where the model is beside
the point."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index_builder.model.encoder import CPU, EncodeResult, Kind, Tokenized

_WORD = re.compile(r"\w+", re.UNICODE)


def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")


@dataclass
class FakeTokens:
    """FakeEncoder's `Tokenized`: the words it kept, their ids and the words it cut."""

    words: list[str]
    ids: list[int]
    overflowing: list[Any]


class FakeEncoder:
    """Deterministic hashing bag-of-words encoder: texts sharing words get similar vectors.

    Stable across processes (blake2b, not `hash()`), so an index built in one test process
    matches queries in another.
    """

    def __init__(self, dim: int = 64, *, name: str = "fake", max_length: int = 128) -> None:
        if dim < 2:
            raise ValueError("dim must be >= 2")
        self._dim = dim
        self._name = name
        self._max_length = max_length
        self._fingerprint = f"{name}:fake:{dim}:{max_length}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def providers(self) -> list[str]:
        return [CPU]

    def _vector(self, words: Sequence[str]) -> NDArray[np.float32]:
        vec = np.zeros(self._dim, dtype=np.float32)
        # The empty text still needs a unit vector; a sentinel word gives it a fixed one.
        for word in words or ["\x00empty"]:
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value & 1 else -1.0
            vec[(value >> 1) % self._dim] += sign
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:  # signs cancelled out exactly
            vec[0] = 1.0
            norm = 1.0
        return vec / norm

    def encode(self, texts: Sequence[str], kind: Kind) -> EncodeResult:
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not a single string")
        return self.encode_tokenized(self.tokenize(texts, kind))

    def tokenize(self, texts: Sequence[str], kind: Kind) -> list[FakeTokens]:
        """Words as tokens (one id each), truncated at max_length like the real tokenizer."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        out = []
        for text in texts:
            words = _WORD.findall(text.lower())
            kept = words[: self._max_length]
            ids = [_word_id(w) for w in kept]
            out.append(FakeTokens(words=kept, ids=ids, overflowing=words[self._max_length :]))
        return out

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult:
        rows = []
        for e in encodings:
            if not isinstance(e, FakeTokens):
                raise TypeError(f"FakeEncoder encodes its own tokens, not {type(e).__name__}")
            rows.append(self._vector(e.words))
        vectors = np.stack(rows) if rows else np.empty((0, self._dim), dtype=np.float32)
        return EncodeResult(
            vectors=vectors,
            n_tokens=[len(e.ids) for e in encodings],
            truncated=[len(e.overflowing) > 0 for e in encodings],
        )

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.encode(texts, "query").vectors

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.encode(texts, "passage").vectors

    def warmup(self) -> None:
        return None

    @property
    def tokenizer(self) -> FakeTokenizer:
        """What the lexical part tokenises with (the real encoder's `tokenizers.Tokenizer`)."""
        return FakeTokenizer()


@dataclass
class _Ids:
    ids: list[int]


class FakeTokenizer:
    """The two calls of `tokenizers.Tokenizer` the lexicon makes: words hashed to ids."""

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[_Ids]:
        # 31 bits: Qdrant's sparse indices are u32, and this keeps them positive everywhere.
        return [_Ids([_word_id(w) >> 1 for w in _WORD.findall(t)]) for t in texts]

    def token_to_id(self, token: str) -> int | None:
        return None
