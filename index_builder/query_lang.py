"""The language a shopper's query is written in, offline, for choosing the answer's language.

Lingua (`lingua-language-detector`, n-gram models bundled in the wheel, no network) is built once
per process over the FAQ's languages plus the other languages shoppers are known to write in
(`OTHER_LANGUAGES`, the shopper log's). The extra languages are there so that a Tagalog, Malay
or Japanese query is recognised as such and its answers fall back to English, instead of being
forced onto the nearest FAQ language: restricted to the six FAQ languages, Lingua gets 26% of
the queries in other languages "right" (none), with them 86-88%. `detect()` answers only with a
language the FAQ has, else None.

Cost and accuracy, shopper dev+test splits (1,006 queries; `faq-model evaluate-answers` prints
the test split's): low-accuracy mode (trigrams only) loads in about 0.1 s and about 25 MB for
17 languages and takes about 0.1 ms a query; high-accuracy mode about 0.9 s, about 320 MB and
0.15 ms. Right: English 85% / 97%, monolingual 87% / 94%, code-mixed 71% / 82%, other languages
86% / 88% (low / high). Low accuracy misses short English queries ("track order pls" reads as
German), but the answer then mostly falls back to English anyway: the top answer is in the
query's language for 93.5% / 95.2% of the shopper test split with the base model. So the
service defaults to low accuracy (`FAQ_QUERY_LANG_LOW_ACCURACY=false` for high).

Mixed-language queries ("can I cancel mi pedido", "barang saya belum sampai, where is my
order") get one language: the one whose n-gram models explain the whole text best. Lingua's
per-section detection is documented as experimental and unreliable on short text, so it is not
used. The English words often win over the sentence's own language (18-29% of code-mixed
queries); the answer is then served in English, which a shopper who typed those English words
can read. A query with no letters ("????", "12345") is undecided.

Code-mixed or not (`read`, for the query log): English words in another language's text. A
query that mixes Latin letters with another script ("accountを作りたい") is; else, when the
text reads as a language other than English, a word of three letters or more that a detector of
that language and English alone gives English a confidence of at least 0.7 makes it so (a
detector of all languages calls "default", "email" and "reset" Italian, French and Indonesian).
On the shopper dev split (threshold chosen there from 0.6/0.7/0.8) the rule flags 80% of the
code-mixed queries and 12% of the others; on the test split 74% and 16% (low-accuracy mode,
about 0.06 ms a query). Other pairs of languages (Hindi with Tamil) are not looked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

# The shopper log's languages (data/shopper/README.md): a query in one of them is recognised
# even where the FAQ has no entry in it, and is then not served in a look-alike language.
OTHER_LANGUAGES: tuple[str, ...] = (
    "en", "es", "pt", "fr", "de", "it", "nl", "tr",
    "id", "ms", "tl", "vi", "th", "hi", "ja", "ko", "zh",
)  # fmt: skip


# English confidence of a word, against the text's own language alone, that makes it code-mixed.
CODE_MIXED_MIN_CONFIDENCE = 0.7
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
# A letter of a script other than Latin (Latin-1, Latin Extended A/B and Vietnamese's included).
_OTHER_SCRIPT = re.compile(r"[^\W\d_A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
_WORD = re.compile(r"[^\W\d_]{3,}")


class QueryLanguageDetector:
    """`detect(text)`: the FAQ language `text` is written in, or None.

    Thread-safe after construction (Lingua's detector is read-only once its models are loaded;
    they are loaded here, eagerly, so the first request does not pay for them).
    """

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
        # Detectors of one language and English, made on first use (they share the loaded
        # models): `read`'s word test.
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
        found = self._detector.detect_language_of(text)
        return self._codes.get(found) if found is not None else None

    def read(self, text: str, *, known: str | None = None) -> tuple[str | None, bool]:
        """`detect_any(text)`, and whether the text is code-mixed (the module's rule). `known`:
        the language `detect_any(text)` gave already (not detected again)."""
        if self._detector is None:
            return self.detect_any(text), False
        found = self._languages.get(known) if known is not None else None
        if found is None:
            found = self._detector.detect_language_of(text)
        lang = self._codes.get(found) if found is not None else None
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
