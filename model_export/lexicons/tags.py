"""Scores of the marks a lexicon puts on a sense, for ranking translations of one headword.

Readers record marks as plain strings in `Dictionary.tags` (Ding's "[econ.]" becomes "econ",
EDICT's "{bus}" "bus", its "(P)" "common"); this module decides what they are worth. Shop
subject fields win because a shopper's "order" is the commercial one (Ding lists "Bestellung
[econ.]" beside "Ordnung", "Befehl"); frequency marks (EDICT's "(P)", a first sense) come
next; archaic, slang and regional marks cost, since a shopper would not write them.
"""

from __future__ import annotations

from collections.abc import Iterable

# Subject fields of commerce, shipping, money and computing, as the readers normalise them
# (lower case, no trailing dot). Ding: econ. transp. fin. comp. adm. jur.; EDICT: bus finc
# econ comp law; CC-CEDICT has no subject fields.
SHOP_SUBJECTS = frozenset(
    {"econ", "transp", "fin", "finc", "comp", "adm", "bus", "law", "jur", "telco", "post"}
)
# Frequency marks: EDICT's "(P)" (a common word) and the first of its numbered senses.
COMMON = frozenset({"common", "sense1"})
# Register and age marks a shopper would not write: Ding's [veraltet] [obs.] [ugs.] [vulg.]
# [pej.] [poet.] [slang] [humor.], EDICT's (arch) (obs) (vulg) (sl) (X) (poet) (rare).
MARKED = frozenset(
    {
        "veraltet", "obs", "ugs", "vulg", "pej", "poet", "slang", "humor", "selten", "rare",
        "arch", "sl", "x", "archaic", "dated", "obsolete", "geh", "tm", "alt", "ös", "schweiz",
        "südd",
    }
)  # fmt: skip


def normalise_tag(tag: str) -> str:
    """Lower case, no surrounding dots or spaces: "[Econ.]" and "econ" are one subject."""
    return tag.strip().strip("[](){}").strip().rstrip(".").casefold()


def tag_score(tags: Iterable[str]) -> int:
    """2 for a shop subject field, +1 for a frequency mark, -1 for a marked register."""
    tags = frozenset(tags)
    return 2 * bool(tags & SHOP_SUBJECTS) + bool(tags & COMMON) - bool(tags & MARKED)
