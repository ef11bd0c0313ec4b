"""Evaluation corpora: English entries plus questions aligned with them in other languages.

* Debian FAQ (`debian-faq`, `debian-faq-{de,fr,it,nl,pt}`): one HTML file per chapter,
  `<chapter>.en.html` in `/usr/share/doc/debian/FAQ/` and `<lang>/<chapter>.<lang>.html` for the
  translations. Each section heading carries an anchor (`<a id="whatisfaq">`) shared by all
  languages, so a translated question maps to its English entry by (chapter, anchor).
* django-oscar (PyPI wheel, BSD): `oscar/locale/<locale>/LC_MESSAGES/django.po`. An entry is an
  English interface string; its queries are the translations. Only a held-out share of the
  strings is used (`oscar_heldout`): the training data is built from the same files, and the
  eval guard drops the held-out strings from training once they are written to `artifacts/eval/`.

A `Corpus` is the English entries plus `AlignedItem`s (entry id, language, translated question,
English question); `queries.py` turns the items into the query kinds.
"""

from __future__ import annotations

import hashlib
import html
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model_export.training.data import _clean_ui_string as _training_clean
from model_export.training.data import parse_po

DEBIAN_FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
DEBIAN_LANGS = ("de", "fr", "it", "nl", "pt")
# Locale directory in the wheel -> language code used in the results.
OSCAR_LOCALES: dict[str, str] = {
    "de": "de",
    "fr": "fr",
    "es": "es",
    "it": "it",
    "nl": "nl",
    "pt_BR": "pt",
}
OSCAR_HELDOUT_BUCKETS = 3  # one string in three is held out for evaluation

_HEADING_RE = re.compile(r"<h([2-6])\b[^>]*>(.*?)</h\1>", re.IGNORECASE | re.DOTALL)
_ANCHOR_RE = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]+>")
_SECTION_NUMBER_RE = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s+")


@dataclass(frozen=True)
class Entry:
    """One indexed English FAQ entry (the passage side)."""

    id: str
    text: str
    question: str


@dataclass(frozen=True)
class AlignedItem:
    """A question in `lang` and the English question of the entry it belongs to."""

    entry_id: str
    lang: str
    text: str
    english: str


@dataclass
class Corpus:
    name: str
    entries: list[Entry]
    items: list[AlignedItem]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted({i.lang for i in self.items})

    def items_for(self, lang: str) -> list[AlignedItem]:
        return [i for i in self.items if i.lang == lang]

    def check(self) -> None:
        """Every item points at an existing entry whose English question it carries."""
        by_id = {e.id: e for e in self.entries}
        if len(by_id) != len(self.entries):
            raise ValueError(f"{self.name}: duplicate entry ids")
        for item in self.items:
            entry = by_id.get(item.entry_id)
            if entry is None:
                raise ValueError(f"{self.name}: {item.entry_id} has no entry")
            if entry.question != item.english:
                raise ValueError(f"{self.name}: {item.entry_id} is aligned with the wrong entry")


def clean_text(text: str) -> str:
    """HTML fragment -> plain text on one line."""
    return " ".join(html.unescape(_TAG_RE.sub(" ", text)).split())


# --- Debian FAQ -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    anchor: str
    question: str
    answer: str


def parse_faq_html(text: str, *, answer_chars: int = 300) -> list[Section]:
    """Sections (anchor, heading without its number, start of the text under it) of one chapter."""
    matches = list(_HEADING_RE.finditer(text))
    out: list[Section] = []
    for i, m in enumerate(matches):
        anchor = _ANCHOR_RE.search(m.group(2))
        if anchor is None:
            continue
        question = _SECTION_NUMBER_RE.sub("", clean_text(m.group(2)))
        if not question:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        answer = clean_text(text[m.end() : end])
        if len(answer) > answer_chars:
            # Cut at a word boundary so no half word is embedded.
            answer = answer[:answer_chars].rsplit(" ", 1)[0]
        out.append(Section(anchor.group(1), question, answer))
    return out


def _chapter_files(faq_dir: Path, lang: str) -> dict[str, Path]:
    if lang == "en":
        files = sorted(faq_dir.glob("*.en.html"))
        suffix = ".en.html"
    else:
        files = sorted((faq_dir / lang).glob(f"*.{lang}.html"))
        suffix = f".{lang}.html"
    return {p.name[: -len(suffix)]: p for p in files if not p.name.startswith("index.")}


def debian_faq(
    faq_dir: Path = DEBIAN_FAQ_DIR,
    languages: Sequence[str] = DEBIAN_LANGS,
    *,
    entry_text: str = "question+answer",
    answer_chars: int = 300,
) -> Corpus:
    """English sections are the entries; each translated section heading is an aligned item.

    `entry_text="question+answer"` indexes the heading plus the start of its answer, so the
    English control (English question -> entry) is not an identity match; `"question"` indexes
    the heading alone, as the service indexes FAQ questions.
    """
    if entry_text not in ("question", "question+answer"):
        raise ValueError(f"entry_text must be 'question' or 'question+answer', not {entry_text!r}")
    english: dict[str, Section] = {}
    for chapter, path in _chapter_files(faq_dir, "en").items():
        for sec in parse_faq_html(
            path.read_text(encoding="utf-8", errors="replace"), answer_chars=answer_chars
        ):
            english.setdefault(f"{chapter}#{sec.anchor}", sec)
    if not english:
        raise FileNotFoundError(f"no English Debian FAQ chapters under {faq_dir} (debian-faq)")
    entries = [
        Entry(
            id=eid,
            text=sec.question
            if entry_text == "question" or not sec.answer
            else f"{sec.question} {sec.answer}",
            question=sec.question,
        )
        for eid, sec in sorted(english.items())
    ]
    items: list[AlignedItem] = []
    for lang in languages:
        chapters = _chapter_files(faq_dir, lang)
        if not chapters:
            raise FileNotFoundError(
                f"no Debian FAQ in {lang!r} under {faq_dir} (debian-faq-{lang})"
            )
        seen: set[str] = set()
        for chapter, path in sorted(chapters.items()):
            for sec in parse_faq_html(path.read_text(encoding="utf-8", errors="replace")):
                eid = f"{chapter}#{sec.anchor}"
                if eid not in english or eid in seen:
                    continue
                seen.add(eid)
                en = english[eid].question
                if sec.question.casefold() == en.casefold():
                    continue  # untranslated heading: not a cross-lingual query
                items.append(AlignedItem(eid, lang, sec.question, en))
    corpus = Corpus("debian-faq", entries, items, {"faq_dir": str(faq_dir)})
    corpus.check()
    return corpus


# --- django-oscar ---------------------------------------------------------------------------


def clean_ui_string(text: str) -> str:
    """Interface string without placeholders and markup, exactly as the training pairs have it.

    The same function as the training data builder, so the eval guard (exact match after
    normalisation) recognises a held-out string in the training pairs.
    """
    return _training_clean(text)


def oscar_heldout(english: str, buckets: int = OSCAR_HELDOUT_BUCKETS) -> bool:
    """Whether an English oscar string belongs to the evaluation share (stable hash split)."""
    key = " ".join(english.casefold().split()).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % buckets == 0


def oscar_po_texts(path: Path, locales: Sequence[str]) -> dict[str, str]:
    """`.po` text per locale from a django-oscar wheel (zip) or an extracted source tree."""
    out: dict[str, str] = {}
    for locale in locales:
        rel = f"oscar/locale/{locale}/LC_MESSAGES/django.po"
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if rel in zf.namelist():
                    out[locale] = zf.read(rel).decode("utf-8")
        elif (path / rel).is_file():
            out[locale] = (path / rel).read_text(encoding="utf-8")
    return out


def _translations(po_text: str, min_words: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for msgid, msgstr, fuzzy in parse_po(po_text):
        en, xx = clean_ui_string(msgid), clean_ui_string(msgstr)
        if fuzzy or not en or not xx or en.casefold() == xx.casefold():
            continue
        if len(en.split()) < min_words:
            continue
        out.setdefault(en, xx)
    return out


def oscar_strings(
    path: Path,
    locales: Mapping[str, str] = OSCAR_LOCALES,
    *,
    max_entries: int = 400,
    min_words: int = 2,
    heldout_only: bool = True,
) -> Corpus:
    """Held-out English strings translated in every locale, at most `max_entries` of them.

    Requiring all locales keeps the candidate set identical across languages, so per-language
    numbers differ by language only. A translation shared by two entries in one language is
    ambiguous and dropped for that language.
    """
    texts = oscar_po_texts(path, list(locales))
    missing = [loc for loc in locales if loc not in texts]
    if missing:
        raise FileNotFoundError(f"{path}: no django.po for {missing}")
    per_locale = {loc: _translations(texts[loc], min_words) for loc in locales}
    common = set.intersection(*(set(d) for d in per_locale.values()))
    pool = sorted(e for e in common if not heldout_only or oscar_heldout(e))
    # A stable pseudo-random subset, not the alphabetical head (which is biased to "A ..." texts).
    pool.sort(key=lambda e: hashlib.sha256(e.encode("utf-8")).hexdigest())
    pool = sorted(pool[:max_entries])
    entries = [
        Entry(f"oscar:{hashlib.sha256(e.encode('utf-8')).hexdigest()[:12]}", e, e) for e in pool
    ]
    items: list[AlignedItem] = []
    for loc, lang in locales.items():
        counts: dict[str, int] = {}
        for e in pool:
            key = per_locale[loc][e].casefold()
            counts[key] = counts.get(key, 0) + 1
        for entry in entries:
            xx = per_locale[loc][entry.question]
            if counts[xx.casefold()] == 1:
                items.append(AlignedItem(entry.id, lang, xx, entry.question))
    corpus = Corpus("oscar", entries, items, {"wheel": str(path)})
    corpus.check()
    return corpus


def iter_entries_as_faq(corpus: Corpus) -> Iterator[dict[str, str]]:
    """Rows for `faq-index build` so a running service can be evaluated over HTTP."""
    for e in corpus.entries:
        yield {"id": e.id, "question": e.text, "answer": e.question, "lang": "en"}
