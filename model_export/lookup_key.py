"""The lookup form of a dictionary word or phrase, shared by the dictionaries and the segmenters.

Its own module because both sides need it: the dictionaries store their keys in this form, and
the segmenters compare text against those keys while joining syllables or characters into
dictionary words; with the function in `dictionaries`, the two modules imported each other.
"""

from __future__ import annotations

import unicodedata


def normalise_key(text: str) -> str:
    """The lookup form of a word or phrase: NFKC, casefolded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
