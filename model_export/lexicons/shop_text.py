"""The shop's own words per language, for ranking dictionary senses: in-domain first.

A translation the shop itself uses is the one to switch in: the German FAQ says
"Bestellung" and "Sendungsnummer", so those beat "Auftrag" and "Frachtnummer" for "order" and
"tracking number". The shop's text is what the shop publishes (the FAQ file's translations,
questions and answers) and what its shoppers wrote in the *train* split of the query log. Never
dev or test: every text also goes through the evaluation guard (`eval_guard.EvalGuard`, whose
sources include the shopper dev/test split recomputed from `queries.jsonl`), and a text the
guard knows is dropped, whatever file it came from, so a test query pasted into the train
file still cannot choose a sense.

`ShopVocabulary` answers "does the shop write this phrase?": word n-grams for languages written
with spaces; substrings of at least two characters for Chinese, Japanese and Thai, which have no
spaces to find words by.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from model_export.eval_guard import EvalGuard, normalise
from model_export.lookup_key import normalise_key
from model_export.segmentation import words

UNSPACED = frozenset({"zh", "ja", "th"})
MAX_NGRAM = 4
# A one-character CJK "word" occurs in almost any text; two characters are a word.
MIN_UNSPACED_CHARS = 2


@dataclass
class ShopVocabulary:
    lang: str
    ngrams: set[str] = field(default_factory=set)
    joined: str = ""

    @classmethod
    def build(cls, lang: str, texts: Iterable[str]) -> ShopVocabulary:
        out = cls(lang)
        if lang in UNSPACED:
            out.joined = "\n".join(normalise_key(t) for t in texts)
            return out
        for text in texts:
            ws = [normalise_key(w) for w in words(text, lang)]
            for n in range(1, MAX_NGRAM + 1):
                out.ngrams.update(" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1))
        return out

    def __contains__(self, phrase: object) -> bool:
        if not isinstance(phrase, str):
            return False
        key = normalise_key(phrase)
        if not key:
            return False
        if self.lang in UNSPACED:
            return len(key.replace(" ", "")) >= MIN_UNSPACED_CHARS and key in self.joined
        return key in self.ngrams


@dataclass
class ShopText:
    """Texts per language (ISO 639-1), and how many the guard refused."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    guarded: int = 0
    sources: list[str] = field(default_factory=list)

    def vocabulary(self, lang: str) -> ShopVocabulary:
        return ShopVocabulary.build(lang, self.texts.get(lang, []))

    def add(self, lang: str, text: str, guard: EvalGuard | None) -> None:
        if guard is not None and normalise(text) in guard.texts:
            self.guarded += 1
            return
        self.texts.setdefault(lang, []).append(text)


def _rows(path: Path) -> Iterable[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if isinstance(row, dict):
                    yield row


def load_shop_text(files: Iterable[str | Path], *, guard: EvalGuard | None = None) -> ShopText:
    """Texts of FAQ files (`lang`, `question`, `answer`) and query logs (`lang`, `query`).

    `guard` defaults to the evaluation guard over the shopper log's dev/test split; pass one
    explicitly to add evaluation sets. Only JSONL: the shop's FAQ and the log are JSONL here.
    """
    if guard is None:
        guard = EvalGuard.from_sources(eval_dirs=(), debian_faq_dir=None)
    out = ShopText()
    for f in files:
        path = Path(f)
        out.sources.append(str(path))
        for row in _rows(path):
            lang = row.get("lang")
            if not isinstance(lang, str):
                continue
            for key in ("question", "answer", "query"):
                text = row.get(key)
                if isinstance(text, str) and text.strip():
                    out.add(lang, text, guard)
    return out
