"""The form in which evaluation and training texts are compared: the eval guard's key.

Its own module because two sides need the same definition: the evaluation guard refuses a
training pair whose text has the key of an evaluation text, and the shopper log's split hashes
the key, so near-duplicates land in one split. With the function in `eval_guard`, the guard
(which reads the shopper split) and `shopper_data` imported each other.

The key: NFKC, casefold, e5 prefixes, format placeholders and punctuation removed, single
spaces. Punctuation and placeholders go because the evaluation builders clean strings that
training keeps raw: "Is public" in the django-oscar training pairs is "Is public?" in the
evaluation set, and "'%(title)s' has been added" is "' ' has been added".
"""

from __future__ import annotations

import re
import unicodedata

_PREFIX_RE = re.compile(r"^(query|passage):\s*", re.IGNORECASE)
# printf-style (%(name)s, %s, %d) and str.format ({name}, {0}) placeholders of gettext strings.
_PLACEHOLDER_RE = re.compile(r"%\(\w+\)[sdifr]|%[sdifr]|\{\w*\}")
# Punctuation, symbols, separators and controls become spaces; letters, combining marks (Thai,
# Hindi vowel signs) and digits stay.
_DROPPED_CATEGORIES = frozenset("PSZC")


def normalise(text: str) -> str:
    """The guard key of `text` (see the module docstring)."""
    text = _PREFIX_RE.sub("", unicodedata.normalize("NFKC", text).strip())
    text = "".join(
        " " if unicodedata.category(c)[0] in _DROPPED_CATEGORIES else c
        for c in _PLACEHOLDER_RE.sub(" ", text)
    )
    return " ".join(text.casefold().split())
