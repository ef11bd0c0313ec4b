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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# The shopper log's languages (data/shopper/README.md): a query in one of them is recognised
# even where the FAQ has no entry in it, and is then not served in a look-alike language.
OTHER_LANGUAGES: tuple[str, ...] = (
    "en", "es", "pt", "fr", "de", "it", "nl", "tr",
    "id", "ms", "tl", "vi", "th", "hi", "ja", "ko", "zh",
)  # fmt: skip


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
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

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
        self._detector: Any = None
        if len(self._codes) >= 2:
            builder = LanguageDetectorBuilder.from_languages(*self._codes)
            if low_accuracy:
                builder = builder.with_low_accuracy_mode()
            self._detector = builder.with_preloaded_language_models().build()

    def detect_any(self, text: str) -> str | None:
        """The most likely language among all the detector knows, or None if undecided."""
        if self._detector is None:
            # One language (or none) known: nothing to tell apart.
            return next(iter(self.languages), None) if any(c.isalpha() for c in text) else None
        found = self._detector.detect_language_of(text)
        return self._codes.get(found) if found is not None else None

    def detect(self, text: str) -> str | None:
        """The query's language if the FAQ has entries in it, else None."""
        code = self.detect_any(text)
        return code if code in self.faq_languages else None
