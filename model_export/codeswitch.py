"""Word-level code-switching with bilingual dictionaries.

Two policies:

* `official`: the sampler of `miradel51/codemix_ptm` (2403.01364): per sentence draw
  n ~ U[0, floor((len-1)/2)] word positions among all words and replace each chosen word that
  the dictionary knows (unknown chosen words stay, so the realised rate depends on coverage).
* `rate`: a fixed share p (default 0.10) of the *switchable* units (words or phrases with a
  dictionary entry), like CodeSwitchCLIR's per-token probability but with the count fixed per
  sentence, k = floor(p*m) or ceil(p*m) by stochastic rounding, so the rate holds sentence by
  sentence and not only on average.

Replacement keeps everything between words (punctuation, spacing) byte for byte and carries
the source word's casing pattern (UPPER, Title) onto the translation. With several target
languages, `mix="sentence"` picks one language per sentence (bilingual code-switching) and
`mix="word"` picks one per replaced word (multilingual code-switching, 2305.05295).

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

from model_export.dictionaries import WORD_RE, Dictionary, normalise_key

Policy = Literal["official", "rate"]
Mix = Literal["sentence", "word"]


@dataclass(frozen=True)
class Replacement:
    source: str
    target: str
    lang: str
    start: int  # character span of the source in the original text
    end: int


@dataclass(frozen=True)
class SwitchResult:
    text: str
    replacements: tuple[Replacement, ...] = ()
    words: int = 0
    switchable: int = 0


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

    def _units(self, text: str, langs: list[str]) -> tuple[list[_Unit], int]:
        """Greedy longest-match segmentation into phrases/words; phrases only across whitespace."""
        words = list(WORD_RE.finditer(text))
        units: list[_Unit] = []
        i = 0
        while i < len(words):
            chosen: _Unit | None = None
            for n in range(min(self._max_n, len(words) - i), 0, -1):
                span = words[i : i + n]
                gaps = (text[a.end() : b.start()] for a, b in itertools.pairwise(span))
                if n > 1 and any(g.strip() for g in gaps):
                    continue
                key = normalise_key(" ".join(w.group() for w in span))
                options = {
                    lang: self.dictionaries[lang].entries[key]
                    for lang in langs
                    if key in self.dictionaries[lang].entries
                }
                if options or n == 1:
                    start, end = span[0].start(), span[-1].end()
                    chosen = _Unit(start, end, text[start:end], options)
                    i += n
                    break
            assert chosen is not None
            units.append(chosen)
        return units, len(words)

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
        units, n_words = self._units(text, langs)
        switchable = [i for i, u in enumerate(units) if u.options]
        if self.policy == "official":
            upper = max(0, (len(units) - 1) // 2)
            n = rng.randint(0, upper)
            chosen = [i for i in rng.sample(range(len(units)), n) if units[i].options]
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
            reps.append(Replacement(unit.text, target, lang, unit.start, unit.end))
        pieces.append(text[last:])
        return SwitchResult("".join(pieces), tuple(reps), n_words, len(switchable))
