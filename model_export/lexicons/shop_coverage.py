"""How many of the English FAQ's content words a lexicon can switch into the shop's own words.

For one language X and the English FAQ's content-word types W (questions and answers, function
words and numbers left out): en->X covers w when one of the translations the cleaned table
keeps for w occurs in the shop's X text; X->en covers w when a word of the shop's X text has w
among its kept translations. "any" counts a kept translation of any kind. Three stages, each a
full `load_tables` run as training would do it:

* before: the FreeDict English->X file alone, ranked by frequency (today's configs);
* lexicons: every source of `sources.AFTER`, ranked by subject tags then frequency;
* after: the same plus in-domain ranking on the shop's text, phrase headwords (up to four
  words) and, for Hindi, romanised translations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_export.codeswitch import ENGLISH
from model_export.lexicon import function_words
from model_export.lexicons import sources
from model_export.lexicons.shop_text import ShopText, ShopVocabulary, load_shop_text
from model_export.lookup_key import normalise_key
from model_export.segmentation import words

STAGES = ("before", "lexicons", "after")
PHRASE_WORDS = 4


def english_content_types(faq: Path) -> set[str]:
    """Normalised content words of the English entries (questions and answers)."""
    stop = function_words(ENGLISH)
    out: set[str] = set()
    with faq.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("lang", ENGLISH) != ENGLISH:
                continue
            for text in (row.get("question", ""), row.get("answer", "")):
                for w in words(str(text), ENGLISH):
                    key = normalise_key(w)
                    if len(key) > 1 and key.isalpha() and key not in stop:
                        out.add(key)
    return out


@dataclass
class Coverage:
    types: int
    any: int
    in_domain: int
    missing: list[str]

    def as_dict(self) -> dict[str, Any]:
        share = (lambda n: round(n / self.types, 4)) if self.types else (lambda n: 0.0)
        return {
            "types": self.types,
            "any": self.any,
            "any_share": share(self.any),
            "in_domain": self.in_domain,
            "in_domain_share": share(self.in_domain),
            "missing_examples": self.missing,
        }


def _from_en(table: Any, vocab: ShopVocabulary, types: set[str], top: int) -> Coverage:
    anyt = {w for w in types if table.entries.get(w)}
    ind = {w for w in anyt if any(t in vocab for t in table.entries[w])}
    return Coverage(len(types), len(anyt), len(ind), sorted(types - ind)[:top])


def _to_en(table: Any, vocab: ShopVocabulary, types: set[str], top: int) -> Coverage:
    reached: set[str] = set()
    shop: set[str] = set()
    for src, targets in table.entries.items():
        keys = {normalise_key(t) for t in targets} & types
        reached |= keys
        if keys and src in vocab:
            shop |= keys
    return Coverage(len(types), len(reached), len(shop), sorted(types - shop)[:top])


def _config(stage: str, langs: Sequence[str], shop_files: Sequence[str]) -> Any:
    from model_export.training.config import CodeSwitchConfig, LanguageDictionaries

    table = sources.BEFORE if stage == "before" else sources.AFTER
    cs = CodeSwitchConfig(
        languages=list(langs),
        dictionaries={
            lang: LanguageDictionaries(from_en=list(table[lang])) for lang in langs if table[lang]
        },
    )
    if stage == "after":
        cs.shop_text = list(shop_files)
        cs.max_phrase_words = PHRASE_WORDS
        cs.romanise = [lang for lang in langs if lang in sources.ROMANISED]
    return cs


def measure(
    langs: Sequence[str], faq: Path, shop_files: Sequence[str], *, top: int = 15
) -> dict[str, Any]:
    """{lang: {direction: {stage: coverage}}} plus the shop text's size per language."""
    from model_export.training.switching import load_tables

    types = english_content_types(faq)
    shop: ShopText = load_shop_text(shop_files)
    out: dict[str, Any] = {
        "english_content_types": len(types),
        "shop_text": {lang: len(t) for lang, t in sorted(shop.texts.items())},
        "guarded_texts": shop.guarded,
        "languages": {},
    }
    for stage in STAGES:
        tables = load_tables(_config(stage, langs, shop_files))
        for lang in langs:
            vocab = shop.vocabulary(lang)
            for direction, measure_fn in (("from_en", _from_en), ("to_en", _to_en)):
                table = tables.tables.get((lang, direction))
                row = out["languages"].setdefault(lang, {}).setdefault(direction, {})
                row[stage] = (
                    measure_fn(table.dictionary, vocab, types, top).as_dict()
                    if table is not None
                    else None
                )
    return out


def table(report: dict[str, Any]) -> str:
    """Markdown: in-domain share (and any-translation share) per language, direction, stage."""
    lines = [
        "| lang | direction | " + " | ".join(STAGES) + " |",
        "|---|---|" + "---|" * len(STAGES),
    ]
    for lang, dirs in report["languages"].items():
        for direction, stages in dirs.items():
            cells = []
            for stage in STAGES:
                c = stages.get(stage)
                cells.append(
                    "-" if c is None else f"{c['in_domain_share']:.1%} ({c['any_share']:.0%})"
                )
            lines.append(f"| {lang} | {direction} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
