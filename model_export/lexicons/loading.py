"""Load any dictionary file the configs may name, by format: FreeDict, MUSE, TSV and the readers.

`dictionaries.load_dictionary` reads the formats that need no reader of this package; this
module adds Ding, EDICT, CC-CEDICT and Apertium, in the direction a config asks for (English on
one side), and is what the training switcher loads through. It lives here and not in
`dictionaries` because the readers build on `dictionaries.Dictionary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from model_export.dictionaries import (
    DictFormat,
    Dictionary,
    detect_format,
    load_dictionary,
    merge,
)
from model_export.lexicons.apertium import load_apertium
from model_export.lexicons.cedict import load_cedict
from model_export.lexicons.ding import load_ding
from model_export.lexicons.edict import load_edict

READER_FORMATS = frozenset({"ding", "edict", "cedict", "apertium"})


def _inverse(d: Dictionary) -> Dictionary:
    out = Dictionary(d.tgt_lang, d.src_lang, sources=list(d.sources))
    for src, targets in d.entries.items():
        for tgt in targets:
            out.add(tgt, src, d.tags.get((src, tgt), ()))
    return out


def load_any(
    path: str | Path, fmt: DictFormat = "auto", *, src_lang: str, tgt_lang: str
) -> Dictionary:
    """One dictionary file as `src_lang` -> `tgt_lang` (one of them English)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READER_FORMATS:
        return load_dictionary(path, fmt, src_lang=src_lang, tgt_lang=tgt_lang)
    path = Path(path)
    from_english = src_lang in ("en", "eng")
    if fmt == "ding":
        d = load_ding(path, direction="en-de" if from_english else "de-en")
    elif fmt == "apertium":
        # The file has its own direction (eng-spa / spa-eng); ask it the source's words.
        d = load_apertium(path, vocabulary_lang="en" if from_english else src_lang[:2])
    else:
        d = load_edict(path) if fmt == "edict" else load_cedict(path)
        if not from_english:
            # Both are read English->X (inverted from the file); X->English is the file's own.
            d = _inverse(d)
    d.src_lang, d.tgt_lang = src_lang, tgt_lang
    return d


def load_merged(
    paths: Sequence[str | Path], *, src_lang: str, tgt_lang: str, max_translations: int = 0
) -> Dictionary:
    """`dictionaries.load_merged` for every format: first listed wins the sense order."""
    merged = merge(load_any(p, src_lang=src_lang, tgt_lang=tgt_lang) for p in paths)
    return merged.truncated(max_translations) if max_translations > 0 else merged
