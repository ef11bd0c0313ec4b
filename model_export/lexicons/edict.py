"""EDICT (Japanese-English) as Debian's `edict` installs it, inverted for English->Japanese.

`/usr/share/edict/edict`, EUC-JP, one entry a line:

    注文 [ちゅうもん] /(n,vs) (1) order/request/(2) wish/(P)/

The headword (kanji, or kana alone) and its reading in `[...]`, then `/`-separated glosses.
`(1)`, `(2)` number the senses by frequency, `(P)` marks a common word, `(n,vs)` is the part
of speech, `{comp}` a subject field, `(arch)` a register. Each English gloss becomes a
headword whose translation is the Japanese headword, tagged "common" for `(P)`, "sense1" for
the first sense, and with the field and register marks, so the ranking prefers 注文 (common,
first sense) over オーダー for "order". Glosses keep their words; notes in parentheses and a
leading "to " go ("to order" -> "order").
"""

from __future__ import annotations

import re
from pathlib import Path

from model_export.dictionaries import Dictionary
from model_export.lexicons.tags import normalise_tag

DEFAULT_PATH = Path("/usr/share/edict/edict")

_MARK_RE = re.compile(r"\(([^)]*)\)|\{([^}]*)\}")
_SENSE_RE = re.compile(r"\((\d+)\)")
_ENGLISH_INFINITIVE_RE = re.compile(r"^to\s+(?=\w)", re.IGNORECASE)
# Glosses that point elsewhere or describe instead of translating.
_SKIP_RE = re.compile(r"^(see |variant of|abbr\. of|usu\.)", re.IGNORECASE)


def _marks(gloss: str) -> set[str]:
    out: set[str] = set()
    for paren, brace in _MARK_RE.findall(gloss):
        for mark in (paren or brace).split(","):
            mark = normalise_tag(mark)
            if mark and not mark.isdigit():
                out.add(mark)
    return out


def parse_line(line: str) -> tuple[str, list[tuple[str, frozenset[str]]]] | None:
    """(Japanese headword, [(English gloss, tags), ...]) of one EDICT line, or None."""
    head, sep, body = line.rstrip("\n").partition(" /")
    if not sep:
        return None
    headword = head.split(" [", 1)[0].strip()
    fields = [f for f in body.split("/") if f.strip()]
    common = "(P)" in fields
    glosses: list[tuple[str, frozenset[str]]] = []
    sense = 1
    leading: set[str] = set()
    for field in fields:
        if field == "(P)" or field.startswith("EntL"):
            continue
        numbered = _SENSE_RE.search(field)
        if numbered:
            sense = int(numbered.group(1))
        # Parts of speech and field marks lead the first gloss of a sense; they hold for the
        # glosses after it until the next marked gloss.
        marks = _marks(field)
        if field.lstrip().startswith(("(", "{")):
            leading = marks
        tags = leading | marks | ({"common"} if common else set())
        if sense == 1:
            tags.add("sense1")
        text = " ".join(_MARK_RE.sub(" ", field).split()).strip(" ,.;")
        text = _ENGLISH_INFINITIVE_RE.sub("", text)
        if text and not _SKIP_RE.match(text):
            glosses.append((text, frozenset(tags)))
    return headword, glosses


def load_edict(path: str | Path = DEFAULT_PATH, *, encoding: str = "euc_jp") -> Dictionary:
    """English -> Japanese, every gloss of every entry inverted, with its tags."""
    path = Path(path)
    out = Dictionary("eng", "jpn", sources=[str(path)])
    with path.open(encoding=encoding, errors="replace") as fh:
        for line in fh:
            parsed = parse_line(line)
            if parsed is None:
                continue
            headword, glosses = parsed
            for gloss, tags in glosses:
                out.add(gloss, headword, tags)
    return out
