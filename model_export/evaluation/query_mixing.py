"""Query-side mixing: embed a mixed query beside its lexicon-normalised form and average the two.

Query-embedding mixing (arXiv 2606.13537; CSR-L found lexicon expansion closes part of the
code-switching gap) on this project's lexicons. A shopper's "wo ist meine order" is rewritten
once, word by word, with the *training* lexicons (a run config's `[codeswitch]`, loaded and
cleaned exactly as training loads them: `training.switching.load_tables`), and the query vector
becomes `normalise((1 - w) * v(query) + w * v(normalised))`. Two directions:

* `target`: the English words of the query put into the query's language with the en->X table
  ("wo ist meine order" -> "wo ist meine Bestellung"). A word counts as English where wordfreq
  finds it more frequent in English than in the query's language (without wordfreq data for the
  language: where the X->en table does not list it as an X word), so that loanwords the
  language uses itself stay as they are.
* `en`: every word the X->en table knows put into English ("wo ist meine Bestellung" ->
  "wo ist meine order").

The first translation of each word is taken (the tables rank senses), every known word is
replaced (`CodeSwitcher` with rate 1.0). Queries in a language without a table, and queries the
normaliser leaves unchanged, keep their own vector: no second row is encoded for them. At
serving time the cost is one more row in the same model batch; the evaluation encodes the
normalised forms as a second list through the same (cached) encoder.

Never the evaluation dictionaries: the code-switched evaluation queries (`cs-tgt`) are made with
the separately compiled `freedict-XXX-eng` packages, and normalising with those would undo the
evaluation's own substitutions word for word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from model_export.codeswitch import ENGLISH, CodeSwitcher
from model_export.dictionaries import Dictionary
from model_export.evaluation.encoders import TextEncoder
from model_export.evaluation.metrics import rank_by_similarity
from model_export.lexicon import frequency_ranker
from model_export.segmentation import segmenter_for

Direction = Literal["target", "en"]
DIRECTIONS: tuple[Direction, ...] = ("target", "en")
DEFAULT_WEIGHT = 0.5
DEFAULT_LEXICONS = Path("configs/train/shop.toml")


def english_words(from_en: Dictionary, to_en: Dictionary | None, lang: str) -> Dictionary:
    """The en->X table restricted to headwords that read as English rather than as `lang`."""
    en_rank, x_rank = frequency_ranker(ENGLISH), frequency_ranker(lang)
    out = Dictionary(from_en.src_lang, from_en.tgt_lang, sources=list(from_en.sources))
    for key, targets in from_en.entries.items():
        if en_rank is not None and x_rank is not None:
            english = en_rank(key) > x_rank(key)
        else:
            english = to_en is None or key not in to_en.entries
        if english:
            out.entries[key] = list(targets)
    return out


@dataclass
class QueryNormaliser:
    """Rewrites a query word by word with one direction of the lexicons, per language."""

    direction: Direction
    switchers: dict[str, CodeSwitcher] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_tables(
        cls,
        direction: Direction,
        to_en: dict[str, Dictionary],
        from_en: dict[str, Dictionary],
    ) -> QueryNormaliser:
        out = cls(direction)
        for lang in sorted(set(to_en) | set(from_en)):
            if direction == "target":
                if lang not in from_en:
                    continue
                table = english_words(from_en[lang], to_en.get(lang), lang)
            else:
                if lang not in to_en:
                    continue
                table = to_en[lang]
            if not table.entries:
                continue
            out.switchers[lang] = CodeSwitcher(
                {lang if direction == "target" else ENGLISH: table},
                policy="rate",
                rate=1.0,
                translation_choice="first",
                segmenter=segmenter_for(lang),
            )
            out.sources[lang] = list(table.sources)
        return out

    @classmethod
    def from_config(cls, direction: Direction, config: Path = DEFAULT_LEXICONS) -> QueryNormaliser:
        """The lexicons of a training run config's `[codeswitch]`, cleaned as training cleans
        them (a missing direction is the other one reversed, as there)."""
        from model_export.training.config import load_config
        from model_export.training.switching import load_tables

        tables = load_tables(load_config(config).codeswitch)
        return cls.from_tables(
            direction, tables.dictionaries("to_en"), tables.dictionaries("from_en")
        )

    @property
    def languages(self) -> list[str]:
        return sorted(self.switchers)

    def normalise(self, text: str, lang: str) -> str:
        switcher = self.switchers.get(lang)
        if switcher is None or lang == ENGLISH:
            return text
        return switcher.switch(text).text


@dataclass(frozen=True)
class QueryMix:
    """The option as a whole: which normaliser, and the weight of the normalised vector."""

    normaliser: QueryNormaliser
    weight: float = DEFAULT_WEIGHT
    lexicons: str = ""  # where the tables came from, for the report

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"query-mix weight must be in [0, 1], got {self.weight}")

    def describe(self) -> dict[str, object]:
        return {
            "weight": self.weight,
            "direction": self.normaliser.direction,
            "lexicons": self.lexicons,
            "languages": self.normaliser.languages,
        }

    def query_vectors(
        self, encoder: TextEncoder, texts: Sequence[str], langs: Sequence[str]
    ) -> tuple[NDArray[np.float32], int]:
        """Mixed query vectors, and how many queries the normaliser changed (got a 2nd row)."""
        if len(texts) != len(langs):
            raise ValueError(f"{len(texts)} queries for {len(langs)} languages")
        vectors = np.array(encoder.encode_queries(list(texts)), dtype=np.float32, copy=True)
        normalised = [
            self.normaliser.normalise(t, lang) for t, lang in zip(texts, langs, strict=True)
        ]
        changed = [i for i, (t, n) in enumerate(zip(texts, normalised, strict=True)) if n != t]
        if changed and self.weight > 0:
            second = encoder.encode_queries([normalised[i] for i in changed])
            mixed = (1.0 - self.weight) * vectors[changed] + self.weight * second
            norms = np.linalg.norm(mixed, axis=1, keepdims=True)
            vectors[changed] = mixed / np.maximum(norms, 1e-12)
        return vectors, len(changed)


class MixingRetriever:
    """Dense ranking with mixed query vectors; the passage side is the encoder's own."""

    def __init__(self, encoder: TextEncoder, mix: QueryMix) -> None:
        self.encoder = encoder
        self.mix = mix
        self.changed = 0  # queries that got a second row, over every call

    def rank_queries(
        self,
        queries: Sequence[str],
        langs: Sequence[str],
        entries: Sequence[tuple[str, str]],
        k: int,
    ) -> list[list[str]]:
        entry_vectors = self.encoder.encode_passages([e[1] for e in entries])
        query_vectors, changed = self.mix.query_vectors(self.encoder, queries, langs)
        self.changed += changed
        return rank_by_similarity(query_vectors, entry_vectors, [e[0] for e in entries], k=k)

    def for_language(self, lang: str) -> LanguageRetriever:
        return LanguageRetriever(self, lang)


@dataclass(frozen=True)
class LanguageRetriever:
    """`Retriever` over queries of one language (the third-party sets go by language)."""

    inner: MixingRetriever
    lang: str

    def rank(
        self, queries: Sequence[str], entries: Sequence[tuple[str, str]], k: int
    ) -> list[list[str]]:
        return self.inner.rank_queries(queries, [self.lang] * len(queries), entries, k)
