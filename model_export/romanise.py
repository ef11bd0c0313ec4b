"""Indic scripts in the informal Latin spelling shoppers type ("mera order kaha hai").

Most Indian shoppers write Hindi (and Bengali, Marathi) in Latin letters, mixed with English, in
an informal spelling: no diacritics, no doubled vowels for long ones, the inherent vowel dropped
where speech drops it ("kab", not "kaba"), nasal endings left out ("nahi", "me", "hai"). Training
text in Devanagari teaches none of that, so dictionary translations and FAQ translations of
these languages can be romanised before they are switched in.

The library: `aksharamukha` (PyPI, AGPL-3.0; used offline only, by the `train` extra), target
"RomanColloquial" (no diacritics, one letter per long vowel) with its Hindi schwa deletion
(`RemoveSchwaHindi`; Bengali: `SchwaFinalBengali`). Measured on the Hindi translations of
FreeDict eng-hin (16,570 Devanagari words) against the 65 Hindi word types of the shopper log's
Hinglish train queries: 38 of them produced with the nasal rule below, 36 without; the same
words through indic-transliteration (ITRANS, lower-cased) 24, uroman 20, anyascii 19 (anyascii
drops every inherent vowel: "kr", "nhim"; uroman doubles long vowels: "kyaa", "meraa").

One rule of ours on top: a word-final nasal sign (anusvara, chandrabindu) is dropped, as
shoppers write "nahi", "me", "hai" for नहीं, में, हैं (the library writes "nahim", "mem",
"haim"). Urdu is not offered: its script leaves short vowels out, and every library tried
guesses them badly ("mira arddr khan hye" for "mera order kahan hai").

Only runs of the language's script are converted; Latin words, digits and punctuation between
them stay byte for byte, so an already mixed text keeps its English.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from model_export.dictionaries import Dictionary


@dataclass(frozen=True)
class Script:
    name: str  # aksharamukha's name of the source script
    run: re.Pattern[str]  # a run of that script (letters and marks)
    final_nasal: re.Pattern[str]  # a word-final nasal sign to drop
    pre_options: tuple[str, ...]


_DEVANAGARI = Script(
    "Devanagari",
    re.compile(r"[\u0900-\u097F\uA8E0-\uA8FF]+"),
    re.compile(r"[\u0901\u0902]$"),
    ("RemoveSchwaHindi",),
)
SCRIPTS: dict[str, Script] = {
    "hi": _DEVANAGARI,
    "mr": _DEVANAGARI,
    "bn": Script(
        "Bengali",
        re.compile(r"[\u0980-\u09FF]+"),
        re.compile(r"[\u0981\u0982]$"),
        ("SchwaFinalBengali",),
    ),
}
LATIN = "latn"


def supported(lang: str) -> bool:
    return lang in SCRIPTS


@functools.lru_cache(maxsize=200_000)
def _romanise_word(word: str, lang: str) -> str:
    # One word at a time, cached: the library takes about a millisecond per call, and a
    # dictionary or a corpus repeats its words many times.
    from aksharamukha import transliterate  # type: ignore[import-untyped]

    script = SCRIPTS[lang]
    word = script.final_nasal.sub("", word)
    latin: str = transliterate.process(
        script.name, "RomanColloquial", word, pre_options=list(script.pre_options)
    )
    return latin.lower()


def romanise(text: str, lang: str) -> str:
    """`text` with every run of `lang`'s Indic script in informal Latin spelling."""
    if lang not in SCRIPTS:
        raise ValueError(f"no romanisation for {lang!r} (one of {', '.join(sorted(SCRIPTS))})")
    return SCRIPTS[lang].run.sub(lambda m: _romanise_word(m.group(0), lang), text)


def romanise_dictionary(d: Dictionary, lang: str, *, side: str = "target") -> Dictionary:
    """The same dictionary with `lang`'s side in Latin script (`side`: "target" or "source").

    en->hi gets Latin translations (English text switched into Hinglish words: "where is mera
    order"); hi->en gets Latin headwords, which then match Hinglish text. Tags follow their pair.
    """
    out = Dictionary(d.src_lang, d.tgt_lang, sources=list(d.sources))
    for src, targets in d.entries.items():
        for tgt in targets:
            tags = d.tags.get((src, tgt), ())
            # FreeDict eng-hin joins the words of a phrase with "~" ("आज्ञा~देना").
            if side == "target":
                out.add(src, romanise(tgt.replace("~", " "), lang), tags)
            else:
                out.add(romanise(src.replace("~", " "), lang), tgt, tags)
    return out
