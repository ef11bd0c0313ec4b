"""Apertium bilingual dictionaries (Debian `apertium-eng-spa`), queried through `lt-proc -b`.

Debian ships only the compiled transducers (`eng-spa.autobil.bin`, `spa-eng.autobil.bin`), not
the `.dix` sources that `lt-expand` would list, and `lt-print` prints a transducer's states, not
its word pairs. So the reader asks: `lt-proc -b` (lttoolbox, bilingual mode) translates lexical
units given as `^lemma<tag>$` and answers `^order<n>/orden<n><m>$`, or `@order` when the word
is missing. The words asked are a vocabulary (by default the language's most frequent words
from wordfreq, plus any the caller adds, such as the FAQ's words) under each open-class part
of speech. Apertium's translations are general-domain defaults ("shipping" -> "navío"); in-domain
ranking and the other sources decide which sense a shop gets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from model_export.dictionaries import Dictionary

DEFAULT_DIR = Path("/usr/share/apertium/apertium-eng-spa")
# Open-class parts of speech in Apertium's tag set: noun, verb, adjective, adverb.
PARTS_OF_SPEECH = ("n", "vblex", "adj", "adv")
DEFAULT_VOCABULARY = 30_000

_UNIT_RE = re.compile(r"\^([^/$]*)/([^$]*)\$")
_TAG_RE = re.compile(r"<[^>]*>")
# Characters with a meaning in Apertium's stream format; words holding them are not asked.
_RESERVED = set("^$/<>@\\{}[]#*")


def default_vocabulary(lang: str, n: int = DEFAULT_VOCABULARY) -> list[str]:
    import wordfreq

    return list(wordfreq.top_n_list(lang, n))


def query(bin_path: Path, words: Iterable[str], tags: Iterable[str] = PARTS_OF_SPEECH) -> str:
    """Raw `lt-proc -b` output for every word under every tag (one line per word)."""
    exe = shutil.which("lt-proc")
    if exe is None:
        raise FileNotFoundError("lt-proc not found: scripts/ensure-debs.sh lttoolbox")
    tags = list(tags)
    lines = [
        " ".join(f"^{w}<{t}>$" for t in tags)
        for w in dict.fromkeys(" ".join(w.split()) for w in words)
        if w and not _RESERVED.intersection(w)
    ]
    done = subprocess.run(
        [exe, "-b", str(bin_path)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def parse(output: str, dictionary: Dictionary) -> Dictionary:
    """Add every known unit of `lt-proc -b` output to `dictionary` (unknown ones start with @)."""
    for source, targets in _UNIT_RE.findall(output):
        src = _TAG_RE.sub("", source).strip()
        for target in targets.split("/"):
            if target.startswith("@"):
                continue
            tgt = _TAG_RE.sub("", target).replace("#", "").strip()
            if src and tgt:
                dictionary.add(src, tgt)
    return dictionary


def load_apertium(
    bin_path: str | Path = DEFAULT_DIR / "eng-spa.autobil.bin",
    *,
    src_lang: str = "eng",
    tgt_lang: str = "spa",
    vocabulary: Iterable[str] | None = None,
    vocabulary_lang: str = "en",
    extra_words: Iterable[str] = (),
) -> Dictionary:
    """The pairs `lt-proc -b` gives for `vocabulary` + `extra_words`.

    Without `vocabulary`, wordfreq's most frequent words of `vocabulary_lang` (ISO 639-1).
    """
    bin_path = Path(bin_path)
    if vocabulary is None:
        vocabulary = default_vocabulary(vocabulary_lang)
    words = [*vocabulary, *extra_words]
    out = Dictionary(src_lang, tgt_lang, sources=[str(bin_path)])
    return parse(query(bin_path, words), out)
