"""Bilingual dictionaries for code-switching: FreeDict (dictd), MUSE text and TSV, merged per pair.

Keys are normalised (NFKC, casefold, single spaces) so that a sentence-initial "Order" and a
lower-case "order" hit the same entry; translations keep the dictionary's own casing because
German nouns are capitalised on purpose. Multi-word headwords ("purchase order") are kept as
phrases; the code-switcher matches the longest phrase first.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Re-exported: the lookup form is part of this module's interface (callers import it from here).
from model_export.lookup_key import normalise_key as normalise_key
from model_export.segmentation import words as segment

DictFormat = Literal["freedict", "muse", "tsv", "ding", "edict", "cedict", "apertium", "auto"]

_DICTD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DICTD_B64_VALUE = {c: i for i, c in enumerate(_DICTD_B64)}
_ANNOTATION_RE = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")
_SENSE_NUMBER_RE = re.compile(r"^\d+\.\s*")


def decode_dictd_number(text: str) -> int:
    """dictd's index stores offsets and lengths in its own base64 digits, most significant first."""
    value = 0
    for char in text:
        try:
            value = value * 64 + _DICTD_B64_VALUE[char]
        except KeyError as exc:
            raise ValueError(f"not a dictd base64 number: {text!r}") from exc
    return value


def encode_dictd_number(value: int) -> str:
    """Inverse of `decode_dictd_number` (used to write test fixtures and round-trip checks)."""
    if value < 0:
        raise ValueError("dictd numbers are non-negative")
    digits = []
    while True:
        value, rest = divmod(value, 64)
        digits.append(_DICTD_B64[rest])
        if value == 0:
            return "".join(reversed(digits))


@dataclass
class Dictionary:
    """Source phrase (normalised) -> translations, in the order the dictionaries listed them.

    `tags` holds what a source says about one sense, keyed by (normalised source, translation):
    subject fields (Ding's "econ.", EDICT's "bus"), register ("obs", "coll") and frequency marks
    (EDICT's "common", "sense1"); `model_export.lexicons.tags` scores them for sense ranking.
    Readers without such marks leave it empty.
    """

    src_lang: str
    tgt_lang: str
    entries: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    tags: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def add(self, src: str, tgt: str, tags: Iterable[str] = ()) -> None:
        key = normalise_key(src)
        value = " ".join(tgt.split())
        if not key or not value or normalise_key(value) == key:
            # An identity "translation" would count as a switch while changing nothing.
            return
        targets = self.entries.setdefault(key, [])
        if value not in targets:
            targets.append(value)
        tags = frozenset(tags)
        if tags:
            # The same pair from two entries (or two sources) keeps every mark.
            self.tags[(key, value)] = self.tags.get((key, value), frozenset()) | tags

    def tags_of(self, src: str, tgt: str) -> frozenset[str]:
        return self.tags.get((normalise_key(src), " ".join(tgt.split())), frozenset())

    def lookup(self, phrase: str) -> list[str]:
        return self.entries.get(normalise_key(phrase), [])

    def __contains__(self, phrase: object) -> bool:
        return isinstance(phrase, str) and normalise_key(phrase) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def max_phrase_words(self) -> int:
        return max((key.count(" ") + 1 for key in self.entries), default=1)

    def truncated(self, max_translations: int) -> Dictionary:
        """Keep the first k translations: FreeDict lists the common senses first."""
        out = Dictionary(self.src_lang, self.tgt_lang, sources=list(self.sources))
        out.entries = {k: v[:max_translations] for k, v in self.entries.items()}
        out.tags = {k: t for k, t in self.tags.items() if k[1] in out.entries.get(k[0], ())}
        return out


def merge(dictionaries: Iterable[Dictionary]) -> Dictionary:
    """Union of several dictionaries of the same pair; earlier dictionaries' translations first."""
    items = list(dictionaries)
    if not items:
        raise ValueError("nothing to merge")
    pairs = {(d.src_lang, d.tgt_lang) for d in items}
    if len(pairs) != 1:
        raise ValueError(f"cannot merge different language pairs: {sorted(pairs)}")
    out = Dictionary(items[0].src_lang, items[0].tgt_lang)
    for d in items:
        out.sources.extend(d.sources)
        for key, targets in d.entries.items():
            for tgt in targets:
                out.add(key, tgt, d.tags.get((key, tgt), ()))
    return out


def _freedict_translations(body: str) -> list[str]:
    """Translations from one dictd entry of the FreeDict TEI export.

    Line 1 is the headword and pronunciation; translation lines start at column 0, optionally
    numbered by sense ("2. commande"); indented lines are examples, synonyms and notes.
    """
    out: list[str] = []
    for line in body.splitlines()[1:]:
        if not line.strip() or line[0].isspace():
            continue
        line = _SENSE_NUMBER_RE.sub("", line)
        line = _ANNOTATION_RE.sub(" ", line)
        for part in line.split(","):
            part = " ".join(part.split()).strip(" ;:.!?")
            if part and not part.startswith("see:"):
                out.append(part)
    return out


def load_freedict(
    index_path: str | Path,
    dict_path: str | Path | None = None,
    *,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
) -> Dictionary:
    """Read a dictd dictionary (`.index` + `.dict.dz` or `.dict`) as FreeDict installs it."""
    index_path = Path(index_path)
    if dict_path is None:
        stem = (
            str(index_path)[: -len(".index")] if index_path.suffix == ".index" else str(index_path)
        )
        candidates = [Path(stem + ".dict.dz"), Path(stem + ".dict")]
        found = [p for p in candidates if p.exists()]
        if not found:
            raise FileNotFoundError(f"no .dict.dz or .dict next to {index_path}")
        dict_path = found[0]
    dict_path = Path(dict_path)
    if src_lang is None or tgt_lang is None:
        # freedict-eng-deu.index -> eng, deu
        m = re.search(r"([a-z]{3})-([a-z]{3})$", index_path.name.split(".")[0])
        src_lang = src_lang or (m.group(1) if m else "src")
        tgt_lang = tgt_lang or (m.group(2) if m else "tgt")
    # dictzip is gzip with a random-access table in the header, so gzip reads it whole.
    if dict_path.suffix == ".dz":
        with gzip.open(dict_path) as gz:
            raw = gz.read()
    else:
        raw = dict_path.read_bytes()
    out = Dictionary(src_lang, tgt_lang, sources=[str(index_path)])
    with index_path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            headword = parts[0].strip()
            if not headword or headword.startswith("00database") or headword.startswith("00-"):
                continue
            offset, length = decode_dictd_number(parts[1]), decode_dictd_number(parts[2])
            body = raw[offset : offset + length].decode("utf-8", errors="replace")
            for tgt in _freedict_translations(body):
                out.add(headword, tgt)
    return out


def load_muse(path: str | Path, *, src_lang: str = "src", tgt_lang: str = "tgt") -> Dictionary:
    """MUSE bilingual lexicon: `src tgt` per line (space or tab), one translation per line."""
    out = Dictionary(src_lang, tgt_lang, sources=[str(path)])
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split("\t") if "\t" in line else line.split(None, 1)
            if len(parts) == 2:
                out.add(parts[0], parts[1])
    return out


def load_tsv(path: str | Path, *, src_lang: str = "src", tgt_lang: str = "tgt") -> Dictionary:
    """`source phrase<TAB>translation[; translation...]`; `#` comments; multi-word on both sides."""
    out = Dictionary(src_lang, tgt_lang, sources=[str(path)])
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            for tgt in re.split(r"[;|]", parts[1]):
                out.add(parts[0], tgt)
    return out


def detect_format(path: str | Path) -> DictFormat:
    """The format by file name, as the Debian and PyPI packages name their files."""
    path = Path(path)
    name = path.name
    if name.endswith(".index"):
        return "freedict"
    if name.endswith(".tsv"):
        return "tsv"
    if path.parent.name == "trans" and re.fullmatch(r"[a-z]{2}-[a-z]{2}", name):
        return "ding"  # /usr/share/trans/de-en
    if name == "edict":
        return "edict"
    if "cedict" in name:
        return "cedict"
    if name.endswith(".autobil.bin"):
        return "apertium"
    return "muse"


def load_dictionary(
    path: str | Path,
    fmt: DictFormat = "auto",
    *,
    src_lang: str = "eng",
    tgt_lang: str | None = None,
) -> Dictionary:
    """Load any supported format; `auto` decides by file name (`.index` FreeDict, `.tsv` TSV)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "freedict":
        return load_freedict(path, src_lang=src_lang, tgt_lang=tgt_lang)
    if fmt in ("ding", "edict", "cedict", "apertium"):
        # Their readers build on this module; `model_export.lexicons.loading` dispatches to them.
        raise ValueError(f"{path}: {fmt} files load through model_export.lexicons.loading")
    tgt = tgt_lang or "tgt"
    if fmt == "tsv":
        return load_tsv(path, src_lang=src_lang, tgt_lang=tgt)
    return load_muse(path, src_lang=src_lang, tgt_lang=tgt)


def load_merged(
    paths: Sequence[str | Path], *, src_lang: str, tgt_lang: str, max_translations: int = 0
) -> Dictionary:
    """Load several dictionaries of one pair and merge them (first listed wins the order)."""
    merged = merge(load_dictionary(p, src_lang=src_lang, tgt_lang=tgt_lang) for p in paths)
    return merged.truncated(max_translations) if max_translations > 0 else merged


@dataclass
class CoverageReport:
    """How much of a corpus the dictionary can switch: by running words and by distinct words."""

    tokens: int
    covered_tokens: int
    types: int
    covered_types: int
    top_missing: list[tuple[str, int]]

    @property
    def token_coverage(self) -> float:
        return self.covered_tokens / self.tokens if self.tokens else 0.0

    @property
    def type_coverage(self) -> float:
        return self.covered_types / self.types if self.types else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "tokens": self.tokens,
            "covered_tokens": self.covered_tokens,
            "token_coverage": round(self.token_coverage, 4),
            "types": self.types,
            "covered_types": self.covered_types,
            "type_coverage": round(self.type_coverage, 4),
            "top_missing": self.top_missing,
        }


def coverage(
    dictionary: Dictionary, texts: Iterable[str], *, top: int = 20, lang: str = "en"
) -> CoverageReport:
    """Share of words that have an entry, counting words that a matched phrase covers.

    Words come from the same segmenter the code-switcher uses for `lang`.
    """
    max_n = dictionary.max_phrase_words
    vocabulary = frozenset(dictionary.entries)
    counts: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    for text in texts:
        words = [normalise_key(w) for w in segment(text, lang, vocabulary)]
        i = 0
        while i < len(words):
            n = next(
                (
                    n
                    for n in range(min(max_n, len(words) - i), 0, -1)
                    if " ".join(words[i : i + n]) in dictionary.entries
                ),
                0,
            )
            for w in words[i : i + max(n, 1)]:
                counts[w] += 1
                if n:
                    covered[w] += 1
            i += max(n, 1)
    missing = Counter({w: c for w, c in counts.items() if w not in covered})
    return CoverageReport(
        tokens=sum(counts.values()),
        covered_tokens=sum(covered.values()),
        types=len(counts),
        covered_types=len(covered),
        top_missing=missing.most_common(top),
    )


def read_corpus(
    path: str | Path, fields: Sequence[str] = ("query", "label", "text", "question")
) -> Iterator[str]:
    """Lines of a text file, or the text fields of a JSONL file."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if path.suffix == ".jsonl":
                row = json.loads(line)
                for f in fields:
                    if isinstance(row.get(f), str):
                        yield row[f]
            else:
                yield line
