"""The language a shopper's query is written in, offline, for choosing the answer's language.

Lingua (n-gram models bundled in the wheel) knows the FAQ's languages plus the shopper log's
(`OTHER_LANGUAGES`), so a query in a language the FAQ lacks is recognised and falls back to
English instead of being forced onto a look-alike FAQ language. A mixed-language query gets the
one language whose models explain the whole text best (Lingua's per-section detection is
unreliable on short text); a query without letters is undecided.

Code-mixed (`read`, for the query log): Latin letters beside another script, or a word of three
letters or more that a detector of the text's language and English alone calls English with a
confidence of at least 0.7 (a detector of all languages calls "email" or "reset" non-English).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

# The shopper log's languages (data/shopper/README.md).
OTHER_LANGUAGES: tuple[str, ...] = (
    "en", "es", "pt", "fr", "de", "it", "nl", "tr",
    "id", "ms", "tl", "vi", "th", "hi", "ja", "ko", "zh",
)  # fmt: skip

CODE_MIXED_MIN_CONFIDENCE = 0.7
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
# A letter of a script other than Latin (Latin-1, Latin Extended A/B and Vietnamese's included).
_OTHER_SCRIPT = re.compile(r"[^\W\d_A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
_WORD = re.compile(r"[^\W\d_]{3,}")


class QueryLanguageDetector:
    """`detect(text)`: the FAQ language `text` is written in, or None. Thread-safe; the models
    load here, eagerly, so the first request does not pay for them."""

    def __init__(
        self,
        faq_languages: Iterable[str],
        *,
        other_languages: Sequence[str] = OTHER_LANGUAGES,
        low_accuracy: bool = False,
    ) -> None:
        from lingua import IsoCode639_1, Language

        self.faq_languages = frozenset(code.strip().lower() for code in faq_languages)
        self.low_accuracy = low_accuracy
        self._codes: dict[Any, str] = {}
        for code in sorted(self.faq_languages | {c.lower() for c in other_languages}):
            try:
                language = Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
            except ValueError:
                continue  # a language Lingua has no model for is never detected
            self._codes[language] = code
        self.languages = frozenset(self._codes.values())
        self._languages = {code: language for language, code in self._codes.items()}
        self._detector: Any = None
        self._english: Any = Language.ENGLISH if "en" in self.languages else None
        # `read`'s detectors of one language and English, made on first use.
        self._pairs: dict[Any, Any] = {}
        if len(self._codes) >= 2:
            self._detector = self._build(self._codes, preload=True)

    def _build(self, languages: Iterable[Any], *, preload: bool = False) -> Any:
        from lingua import LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_languages(*languages)
        if self.low_accuracy:
            builder = builder.with_low_accuracy_mode()
        if preload:
            builder = builder.with_preloaded_language_models()
        return builder.build()

    def detect_any(self, text: str) -> str | None:
        """The most likely language among all the detector knows, or None if undecided."""
        if self._detector is None:
            # One language (or none) known: nothing to tell apart.
            return next(iter(self.languages), None) if any(c.isalpha() for c in text) else None
        return self._codes.get(self._detector.detect_language_of(text))

    def read(self, text: str, *, known: str | None = None) -> tuple[str | None, bool]:
        """`detect_any(text)`, and whether the text is code-mixed (the module's rule). `known`:
        the language `detect_any(text)` gave already (not detected again)."""
        if self._detector is None:
            return self.detect_any(text), False
        found = self._languages.get(known) if known is not None else None
        if found is None:
            found = self._detector.detect_language_of(text)
        lang = self._codes.get(found)
        if _LATIN_WORD.search(text) and _OTHER_SCRIPT.search(text):
            return lang, True
        if found is None or self._english is None or found == self._english:
            return lang, False
        pair = self._pairs.get(found)
        if pair is None:
            pair = self._pairs[found] = self._build((self._english, found))
        mixed = any(
            pair.compute_language_confidence(word, self._english) >= CODE_MIXED_MIN_CONFIDENCE
            for word in _WORD.findall(text)
        )
        return lang, mixed

    def detect(self, text: str) -> str | None:
        """The query's language if the FAQ has entries in it, else None."""
        code = self.detect_any(text)
        return code if code in self.faq_languages else None
