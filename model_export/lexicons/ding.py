"""The Ding German-English dictionary as Debian's `trans-de-en` installs it.

`/usr/share/trans/de-en`, UTF-8, one entry a line, `#` comments:

    Bestellung {f} [econ.] | Bestellungen {pl} | Online-Bestellung :: order | orders | online order
    Nachnahme {f}; Zahlung bei Lieferung :: cash on delivery; collect on delivery [Am.] /COD/

` :: ` separates German from English; ` | ` separates sub-entries, aligned by position on the
two sides (the headword, its inflections, phrases and examples with it); `;` separates
synonyms. `{f}` is grammar, `[econ.]` a subject field or register, `(bei jdm.)` a note, `/COD/`
an abbreviation. The marks in `[...]` of a sub-entry become the tags of every pair it yields:
Ding writes the subject once per sub-entry ("Bestellung {f}; Order {f} [ugs.] [econ.]"), and a
reader that threw tagged senses away would throw away the shop senses ("Rückerstattung
[fin.]"). English verbs are listed as "to order": the "to" goes, so the headword is the word a
text has.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from model_export.dictionaries import Dictionary
from model_export.lexicons.tags import MARKED, normalise_tag

DEFAULT_PATH = Path("/usr/share/trans/de-en")
# Where a word is used, not what it is about: scoped to the synonym that carries it.
REGIONAL = frozenset(
    {"am", "br", "aus", "irl", "sc", "ös", "schw", "schweiz", "südd", "nordd", "bayr", "alt"}
)

_TAG_RE = re.compile(r"\[([^\]]*)\]")
# Grammar {f}, notes (bei jdm.), abbreviations /COD/ and the tags themselves.
_NOISE_RE = re.compile(r"\{[^}]*\}|\([^)]*\)|\[[^\]]*\]|/[^/]*/")
_ENGLISH_INFINITIVE_RE = re.compile(r"^to\s+(?=\w)", re.IGNORECASE)


_GERMAN_ARTICLE_RE = re.compile(r"^(der|die|das)\s+(?=[A-ZÄÖÜ])")


def _tags(text: str) -> frozenset[str]:
    return frozenset(normalise_tag(t) for t in _TAG_RE.findall(text) if t.strip())


def _synonyms(part: str, *, english: bool) -> list[tuple[str, frozenset[str]]]:
    """(text, own tags) of each `;`-separated synonym of a sub-entry."""
    out = []
    for synonym in part.split(";"):
        text = " ".join(_NOISE_RE.sub(" ", synonym).split()).strip(" ,.:!?")
        text = _ENGLISH_INFINITIVE_RE.sub("", text) if english else _GERMAN_ARTICLE_RE.sub("", text)
        if text:
            out.append((text, _tags(synonym)))
    return out


def _subject_tags(*parts: str) -> frozenset[str]:
    # A subject field holds for the whole sub-entry ("Bestellung {f}; Order {f} [ugs.]
    # [econ.]"); a register or regional mark ([ugs.], [veraltet], [Am.]) only for its synonym.
    return frozenset(t for p in parts for t in _tags(p) if t not in MARKED and t not in REGIONAL)


def load_ding(
    path: str | Path = DEFAULT_PATH, *, direction: Literal["en-de", "de-en"] = "en-de"
) -> Dictionary:
    """English->German (default) or German->English pairs of every sub-entry, with their tags."""
    path = Path(path)
    src_lang, tgt_lang = ("eng", "deu") if direction == "en-de" else ("deu", "eng")
    out = Dictionary(src_lang, tgt_lang, sources=[str(path)])
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or " :: " not in line:
                continue
            german, english = line.rstrip("\n").split(" :: ", 1)
            de_parts, en_parts = german.split(" | "), english.split(" | ")
            if len(de_parts) != len(en_parts):
                # Misaligned sub-entries would pair a phrase with another phrase's words.
                continue
            for de_part, en_part in zip(de_parts, en_parts, strict=True):
                subject = _subject_tags(de_part, en_part)
                for en, en_tags in _synonyms(en_part, english=True):
                    for de, de_tags in _synonyms(de_part, english=False):
                        tags = subject | en_tags | de_tags
                        if direction == "en-de":
                            out.add(en, de, tags)
                        else:
                            out.add(de, en, tags)
    return out
