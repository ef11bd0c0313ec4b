"""Script-aware word segmentation for the code-switcher.

The code-switcher replaces `text[start:end]` for word spans and keeps everything between spans
byte for byte, so a segmenter returns ordered, non-overlapping character spans, each covering a
word and no surrounding whitespace or punctuation.

Why not `\\w+`: Python's `\\w` does not match combining marks (Unicode category M*), and Thai,
Devanagari and other Brahmic scripts write most vowels and tone marks as combining marks, so
"สถานะคำสั่งซื้อ" fell apart into "สถานะคำส", "งซ", ... and "मेरा" lost its vowel signs. `WORD_RE`
is built from Unicode categories instead: letters, marks and digits, with marks only after a
base character.

Why per language: some scripts have no spaces between words and some languages put a space
between syllables, so one pattern cannot find dictionary words everywhere:

* `RegexSegmenter` (default): space-separated languages (en, de, hi, ko, ...).
* `ThaiSegmenter`: Thai has no spaces between words; PyThaiNLP's dictionary-based "newmm"
  tokeniser (offline, dictionary bundled in the wheel) splits Thai runs, and adjacent pieces are
  rejoined where the code-switching dictionary knows the longer word.
* `VietnameseSegmenter`: Vietnamese writes one syllable per token, so "đơn hàng" (order) is two
  tokens; syllables are joined greedily into the longest dictionary phrase.
* `CjkSegmenter` (zh, ja): no spaces; forward maximum matching against the dictionary inside
  runs of Han/kana, with the rest of each run kept as one word.

`segmenter_for(lang)` picks one by ISO 639-1 code; `words()` is the convenience form.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Container, Iterator
from typing import Protocol

import regex

from model_export.lookup_key import normalise_key

__all__ = [
    "WORD_PATTERN",
    "WORD_RE",
    "CjkSegmenter",
    "RegexSegmenter",
    "Segmenter",
    "Span",
    "ThaiSegmenter",
    "VietnameseSegmenter",
    "segmenter_for",
    "words",
]

Span = tuple[int, int]

# A piece starts with a letter or digit, never a mark: a mark with no base character (after a
# space, at the start of the text) belongs to no word, and a span starting with a mark would
# make the code-switcher cut a grapheme in half. ZWNJ/ZWJ are kept inside pieces (only between
# word characters) because Persian, Hindi and Malayalam spell single words with them.
_WORD_CHAR = r"[\p{L}\p{M}\p{N}]"
_PIECE = rf"[\p{{L}}\p{{N}}]{_WORD_CHAR}*(?:[\u200c\u200d]+{_WORD_CHAR}+)*"
# Apostrophes (ASCII and U+2019) and hyphens join pieces into one word: "don't", "e-mail"; the
# same joiners as the `\w`-based pattern this replaces in `model_export.dictionaries`.
WORD_PATTERN = rf"{_PIECE}(?:['\u2019\-]{_PIECE})*"
WORD_RE: regex.Pattern[str] = regex.compile(WORD_PATTERN)

# Script_Extensions rather than Script: the long-vowel mark "ー", the iteration marks and the
# combining (han)dakuten are "Common"/"Inherited" by Script but are Japanese by extension.
# Intersected with word characters so that CJK punctuation ("、", "。") stays outside runs.
_CJK_CLASS = r"[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}]"
_THAI_CLASS = r"\p{scx=Thai}"


def _script_run_re(script_class: str) -> regex.Pattern[str]:
    # A run starts at a base character of the script; marks after it stay with it whatever
    # their own script (a combining mark inherits its base's script).
    return regex.compile(
        rf"[{script_class}&&[\p{{L}}\p{{N}}]](?:[{script_class}&&{_WORD_CHAR}]|\p{{M}})*",
        regex.V1,
    )


# One base character and its combining marks: the unit that longest-match may not cut.
_CLUSTER_RE: regex.Pattern[str] = regex.compile(r"\P{M}\p{M}*")


class Segmenter(Protocol):
    """Splits text into word spans; `vocabulary` holds normalised dictionary keys."""

    def spans(self, text: str, vocabulary: Container[str] | None = None) -> list[Span]:
        """Ordered, non-overlapping (start, end) character spans of the words of `text`."""
        ...


def _regex_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[Span]:
    for match in WORD_RE.finditer(text, start, len(text) if end is None else end):
        yield match.span()


def _merge_phrases(
    text: str, pieces: list[Span], vocabulary: Container[str] | None, max_pieces: int
) -> list[Span]:
    """Greedy left-to-right merge of adjacent pieces into the longest known phrase.

    Pieces merge only across whitespace or nothing: punctuation between them ends a phrase, as
    it does in the code-switcher's own phrase matching.
    """
    if vocabulary is None or max_pieces < 2:
        return pieces
    out: list[Span] = []
    i = 0
    while i < len(pieces):
        # Longest run of pieces from i that are joined by whitespace only.
        limit = 1
        while (
            limit < max_pieces
            and i + limit < len(pieces)
            and not text[pieces[i + limit - 1][1] : pieces[i + limit][0]].strip()
        ):
            limit += 1
        taken = 1
        for n in range(limit, 1, -1):
            if normalise_key(text[pieces[i][0] : pieces[i + n - 1][1]]) in vocabulary:
                taken = n
                break
        out.append((pieces[i][0], pieces[i + taken - 1][1]))
        i += taken
    return out


class RegexSegmenter:
    """Words by `WORD_RE`, for languages that separate words with spaces.

    `vocabulary` is accepted for the protocol and unused: multi-word phrases in spaced languages
    are found by the code-switcher's own longest-phrase matching over these words.
    """

    def spans(self, text: str, vocabulary: Container[str] | None = None) -> list[Span]:
        return list(_regex_spans(text))


class VietnameseSegmenter:
    """Syllables joined into the longest dictionary phrase of up to `max_syllables`.

    Vietnamese dictionaries list "đơn hàng" as one headword; kept as two words, neither
    syllable alone ("đơn" = single, "hàng" = goods) would translate to "order".
    """

    def __init__(self, max_syllables: int = 4) -> None:
        if max_syllables < 1:
            raise ValueError(f"max_syllables must be at least 1, got {max_syllables}")
        self.max_syllables = max_syllables

    def spans(self, text: str, vocabulary: Container[str] | None = None) -> list[Span]:
        return _merge_phrases(text, list(_regex_spans(text)), vocabulary, self.max_syllables)


class _ScriptRunSegmenter:
    """`WORD_RE` words, with runs of one script inside them segmented by `_segment_run`.

    A regex word can mix scripts ("iPhoneを注文"); only the runs of the unspaced script need a
    dictionary segmenter, the rest stay regex words.
    """

    _run_re: regex.Pattern[str]

    def _segment_run(
        self, text: str, start: int, end: int, vocabulary: Container[str] | None
    ) -> list[Span]:
        raise NotImplementedError

    def _word_spans(self, text: str, vocabulary: Container[str] | None) -> list[Span]:
        out: list[Span] = []
        for word_start, word_end in _regex_spans(text):
            pos = word_start
            for run in self._run_re.finditer(text, word_start, word_end):
                # Re-running WORD_RE on the other parts drops apostrophes/hyphens left at a
                # script boundary ("注文's" -> "注文", "s").
                out.extend(_regex_spans(text, pos, run.start()))
                out.extend(self._segment_run(text, run.start(), run.end(), vocabulary))
                pos = run.end()
            out.extend(_regex_spans(text, pos, word_end))
        return out

    def spans(self, text: str, vocabulary: Container[str] | None = None) -> list[Span]:
        return self._word_spans(text, vocabulary)


class ThaiSegmenter(_ScriptRunSegmenter):
    """Thai runs split by PyThaiNLP's "newmm" (maximal matching over Thai character clusters).

    newmm's bundled dictionary is finer-grained than bilingual dictionaries ("คำสั่งซื้อ", order,
    comes out as "คำ" + "สั่งซื้อ"), so adjacent pieces are rejoined into the longest entry of
    `vocabulary`, up to `max_pieces` pieces.
    """

    _run_re = _script_run_re(_THAI_CLASS)

    def __init__(self, max_pieces: int = 4) -> None:
        # Imported here so that the module (and every other segmenter) works without the
        # optional `pythainlp` dependency; a missing install fails when Thai is first needed.
        from pythainlp.tokenize import word_tokenize

        if max_pieces < 1:
            raise ValueError(f"max_pieces must be at least 1, got {max_pieces}")
        self.max_pieces = max_pieces
        self._tokenize = word_tokenize

    def _segment_run(
        self, text: str, start: int, end: int, vocabulary: Container[str] | None
    ) -> list[Span]:
        run = text[start:end]
        tokens = self._tokenize(run, engine="newmm", keep_whitespace=False)
        if "".join(tokens) != run:
            # Offsets come from token lengths; if the tokeniser ever rewrites the text, the
            # run as one word is better than spans that point at the wrong characters.
            return [(start, end)]
        out: list[Span] = []
        pos = start
        for token in tokens:
            if not token:
                continue
            token_end = pos + len(token)
            if out and unicodedata.category(token[0]).startswith("M"):
                # A mark cut from its base would make the code-switcher split a grapheme.
                out[-1] = (out[-1][0], token_end)
            else:
                out.append((pos, token_end))
            pos = token_end
        return out

    def spans(self, text: str, vocabulary: Container[str] | None = None) -> list[Span]:
        return _merge_phrases(text, self._word_spans(text, vocabulary), vocabulary, self.max_pieces)


class CjkSegmenter(_ScriptRunSegmenter):
    """Forward maximum matching against `vocabulary` inside runs of Han, hiragana and katakana.

    Characters that start no dictionary word are grouped into one word per unmatched stretch
    rather than split into single characters: every position was already tried down to length
    one, so grouping loses no dictionary match, and it keeps the word count (which sets how many
    replacements the code-switcher draws) near the real number of words instead of counting
    each kana of "したい" as a word. Without a vocabulary a whole run is one word.
    """

    _run_re = _script_run_re(_CJK_CLASS)

    def __init__(self, max_chars: int = 8) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {max_chars}")
        self.max_chars = max_chars

    def _segment_run(
        self, text: str, start: int, end: int, vocabulary: Container[str] | None
    ) -> list[Span]:
        if vocabulary is None:
            return [(start, end)]
        # Match over clusters, not code points, so a match never ends between a kana and a
        # combining (han)dakuten; `max_chars` counts clusters.
        bounds = [m.start() for m in _CLUSTER_RE.finditer(text, start, end)] + [end]
        n_units = len(bounds) - 1
        out: list[Span] = []
        unmatched_from: int | None = None
        i = 0
        while i < n_units:
            length = next(
                (
                    k
                    for k in range(min(self.max_chars, n_units - i), 0, -1)
                    if normalise_key(text[bounds[i] : bounds[i + k]]) in vocabulary
                ),
                0,
            )
            if length == 0:
                if unmatched_from is None:
                    unmatched_from = i
                i += 1
                continue
            if unmatched_from is not None:
                out.append((bounds[unmatched_from], bounds[i]))
                unmatched_from = None
            out.append((bounds[i], bounds[i + length]))
            i += length
        if unmatched_from is not None:
            out.append((bounds[unmatched_from], end))
        return out


def _primary_subtag(lang: str) -> str:
    # "zh-Hant", "pt_BR" and "TH" pick the same segmenter as "zh", "pt" and "th".
    return lang.strip().replace("_", "-").split("-")[0].lower()


@functools.cache
def _segmenter(primary: str) -> Segmenter:
    if primary == "th":
        return ThaiSegmenter()
    if primary == "vi":
        return VietnameseSegmenter()
    if primary in ("zh", "ja"):
        return CjkSegmenter()
    # Korean is written with spaces between words, so the regex serves it too.
    return RegexSegmenter()


def segmenter_for(lang: str) -> Segmenter:
    """The segmenter for an ISO 639-1 language code; one cached instance per language."""
    return _segmenter(_primary_subtag(lang))


def words(text: str, lang: str = "en", vocabulary: Container[str] | None = None) -> list[str]:
    """The words of `text` as strings, segmented for `lang`."""
    return [text[start:end] for start, end in segmenter_for(lang).spans(text, vocabulary)]
