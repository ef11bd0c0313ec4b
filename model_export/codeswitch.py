"""Word-level code-switching with bilingual dictionaries.

Two policies:

* `official`: the sampler of `miradel51/codemix_ptm` (2403.01364): per sentence of len words draw
  n ~ U[0, floor((len-1)/2)] word positions among *all* words and replace each chosen word that
  the dictionary knows (unknown chosen words stay, so the realised rate depends on coverage). A
  chosen word inside a dictionary phrase ("purchase order") switches the whole phrase.
* `rate`: a fixed share p (default 0.10) of the *switchable* units (words or phrases with a
  dictionary entry), like CodeSwitchCLIR's per-token probability but with the count fixed per
  sentence, k = floor(p*m) or ceil(p*m) by stochastic rounding, so the rate holds sentence by
  sentence and not only on average.

Replacement keeps everything between words (punctuation, spacing) byte for byte and carries
the source word's casing pattern (UPPER, Title) onto the translation. With several target
languages, `mix="sentence"` picks one language per sentence (bilingual code-switching) and
`mix="word"` picks one per replaced word (multilingual code-switching, 2305.05295).

Words come from a script-aware segmenter (`segmentation.py`: combining marks stay inside Thai and
Devanagari words; Thai, Vietnamese, Chinese and Japanese are segmented by their own rules), chosen
by the language of the text being switched.

`LanguageSwitcher` is the language-aware front: a text is switched with the dictionaries of its
own language, X->en for non-English text (a target-language sentence with English words, the
shopper's "barang saya belum sampai, where is my order") and en->X for English text (English with
target-language words).

The randomness is a `random.Random` seeded by (seed, salt, text), so a sentence switches the same
way whatever order it is visited in; the trainer passes the epoch as salt to vary it per epoch.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from model_export.dictionaries import Dictionary, normalise_key
from model_export.segmentation import Segmenter, segmenter_for

Policy = Literal["official", "rate"]
Mix = Literal["sentence", "word"]


@dataclass(frozen=True)
class Replacement:
    source: str
    target: str
    lang: str  # the language of the translation
    start: int  # character span of the source in the original text
    end: int
    dictionary: str = ""  # which dictionary gave it (its source files)


@dataclass(frozen=True)
class SwitchResult:
    text: str
    replacements: tuple[Replacement, ...] = ()
    words: int = 0
    switchable: int = 0
    direction: str = ""  # "to_en" / "from_en" from LanguageSwitcher; "" when not switched by it


def match_case(source: str, target: str) -> str:
    """Carry the casing pattern of `source` onto `target`; lower-case sources keep the target's."""
    letters = [c for c in source if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return target.upper()
    if source[:1].isupper() and target:
        return target[0].upper() + target[1:]
    return target


@dataclass
class _Unit:
    start: int
    end: int
    text: str
    # target language -> translations; empty when no dictionary has this unit
    options: dict[str, list[str]] = field(default_factory=dict)


class CodeSwitcher:
    """Replace words by dictionary translations in one or several target languages."""

    def __init__(
        self,
        dictionaries: Mapping[str, Dictionary],
        *,
        policy: Policy = "rate",
        rate: float = 0.10,
        mix: Mix = "sentence",
        seed: int = 0,
        translation_choice: Literal["random", "first"] = "random",
        segmenter: Segmenter | None = None,
    ) -> None:
        if not dictionaries:
            raise ValueError("code-switching needs at least one dictionary")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        self.dictionaries = dict(dictionaries)
        self.policy = policy
        self.rate = rate
        self.mix = mix
        self.seed = seed
        self.translation_choice = translation_choice
        self._max_n = max(d.max_phrase_words for d in self.dictionaries.values())
        self.segmenter = segmenter or segmenter_for("en")
        # Longest-match segmenters (Vietnamese, CJK) join syllables/characters into the words
        # the dictionaries know.
        self._vocabulary = frozenset(k for d in self.dictionaries.values() for k in d.entries)

    def _units(self, text: str, langs: list[str]) -> tuple[list[_Unit], list[int]]:
        """Greedy longest-match grouping of words into phrases (phrases only across whitespace).

        Returns the units and, for each word, the index of the unit that holds it.
        """
        words = self.segmenter.spans(text, self._vocabulary)
        units: list[_Unit] = []
        unit_of_word: list[int] = []
        i = 0
        while i < len(words):
            chosen: _Unit | None = None
            for n in range(min(self._max_n, len(words) - i), 0, -1):
                span = words[i : i + n]
                gaps = (text[a[1] : b[0]] for a, b in itertools.pairwise(span))
                if n > 1 and any(g.strip() for g in gaps):
                    continue
                key = normalise_key(" ".join(text[a:b] for a, b in span))
                options = {
                    lang: self.dictionaries[lang].entries[key]
                    for lang in langs
                    if key in self.dictionaries[lang].entries
                }
                if options or n == 1:
                    start, end = span[0][0], span[-1][1]
                    chosen = _Unit(start, end, text[start:end], options)
                    unit_of_word.extend([len(units)] * n)
                    i += n
                    break
            assert chosen is not None
            units.append(chosen)
        return units, unit_of_word

    def rng_for(self, text: str, salt: int | str = 0) -> random.Random:
        # str seeds go through SHA-512 in CPython, so this is stable across runs and processes.
        return random.Random(f"{self.seed}\x1f{salt}\x1f{text}")

    def switch(
        self, text: str, *, salt: int | str = 0, languages: list[str] | None = None
    ) -> SwitchResult:
        rng = self.rng_for(text, salt)
        langs = sorted(languages or self.dictionaries)
        if self.mix == "sentence":
            langs = [rng.choice(langs)]
        units, unit_of_word = self._units(text, langs)
        n_words = len(unit_of_word)
        switchable = [i for i, u in enumerate(units) if u.options]
        if self.policy == "official":
            # Positions over all words, known or not: a chosen word without an entry stays.
            n = rng.randint(0, max(0, (n_words - 1) // 2))
            picked = {unit_of_word[w] for w in rng.sample(range(n_words), n)}
            chosen = [i for i in sorted(picked) if units[i].options]
        else:
            exact = self.rate * len(switchable)
            k = math.floor(exact) + (1 if rng.random() < exact - math.floor(exact) else 0)
            chosen = rng.sample(switchable, k)
        pieces: list[str] = []
        reps: list[Replacement] = []
        last = 0
        for i in sorted(chosen):
            unit = units[i]
            lang = rng.choice(sorted(unit.options))
            options = unit.options[lang]
            target = options[0] if self.translation_choice == "first" else rng.choice(options)
            target = match_case(unit.text, target)
            pieces.append(text[last : unit.start])
            pieces.append(target)
            last = unit.end
            source = ", ".join(self.dictionaries[lang].sources)
            reps.append(Replacement(unit.text, target, lang, unit.start, unit.end, source))
        pieces.append(text[last:])
        return SwitchResult("".join(pieces), tuple(reps), n_words, len(switchable))


ENGLISH = "en"


class LanguageSwitcher:
    """Switch each text with the dictionaries of its own language, in the right direction.

    `to_en[X]` switches X text into English words (X->en), `from_en[X]` switches English text into
    X words (en->X). English text is switched towards `partner` (the other side's language of a
    pair) when there is a dictionary for it, otherwise towards one (or, with `mix="word"`,
    several) of the `from_en` languages. A text whose language has no dictionary comes back
    unchanged with `direction=""`: the caller counts it.
    """

    def __init__(
        self,
        to_en: Mapping[str, Dictionary],
        from_en: Mapping[str, Dictionary],
        *,
        policy: Policy = "rate",
        rate: float = 0.10,
        mix: Mix = "sentence",
        seed: int = 0,
        translation_choice: Literal["random", "first"] = "random",
    ) -> None:
        if not to_en and not from_en:
            raise ValueError("code-switching needs at least one dictionary")
        common = {
            "policy": policy,
            "rate": rate,
            "mix": mix,
            "seed": seed,
            "translation_choice": translation_choice,
        }
        # Each X->en switcher segments X text with X's segmenter; English text is one switcher
        # over every en->X dictionary, so `mix="word"` can mix target languages in a sentence.
        self.to_en = {
            lang: CodeSwitcher({ENGLISH: d}, segmenter=segmenter_for(lang), **common)  # type: ignore[arg-type]
            for lang, d in to_en.items()
        }
        self.from_en = (
            CodeSwitcher(dict(from_en), segmenter=segmenter_for(ENGLISH), **common)  # type: ignore[arg-type]
            if from_en
            else None
        )

    def languages(self, direction: str) -> list[str]:
        if direction == "to_en":
            return sorted(self.to_en)
        return sorted(self.from_en.dictionaries) if self.from_en is not None else []

    def switch(
        self, text: str, lang: str, *, partner: str | None = None, salt: int | str = 0
    ) -> SwitchResult:
        if lang == ENGLISH:
            if self.from_en is None:
                return SwitchResult(text)
            targets = [partner] if partner in self.from_en.dictionaries else None
            result = self.from_en.switch(text, salt=salt, languages=targets)
            direction = "from_en"
        else:
            switcher = self.to_en.get(lang)
            if switcher is None:
                return SwitchResult(text)
            result = switcher.switch(text, salt=salt)
            direction = "to_en"
        return SwitchResult(
            result.text, result.replacements, result.words, result.switchable, direction
        )
