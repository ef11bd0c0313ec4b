"""Training pairs (query, label) and builders for the sources that install here.

A pair file is JSONL: `{"query": ..., "label": ..., "lang": "de", "label_lang": "en",
"negative": ..., "negative_query": ..., "source": ...}` (`lang` is the query's language,
`label_lang` the label's, both `en` when absent; `negative` an optional hard negative label and
`negative_query` that negative's own query in the pair's query language, for CLEAR's
target-query negatives; `topic` the FAQ topic of the label, so labels of one topic are never
in-batch negatives of each other).

Builders:

* `faq_pairs`: the shop's own FAQ (JSONL/CSV rows with a `question`): label -> label; the
  trainer code-switches the query side online, giving "code-switched label -> label".
* `oscar_pairs`: django-oscar's e-commerce interface strings (`oscar/locale/<lang>/LC_MESSAGES/
  django.po`) read from the wheel or an extracted tree: translation -> English.
* `aligned_paragraph_pairs`: Debian Reference chapters, paragraphs aligned by position, kept only
  where both chapters have the same number of paragraphs.
"""

from __future__ import annotations

import ast
import csv
import html
import json
import logging
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    query: str
    label: str
    lang: str = "en"
    source: str = ""
    negative: str | None = None
    label_lang: str = "en"
    negative_query: str | None = None
    # The FAQ topic the label answers: two labels of one topic (a question and its answer, or
    # two translations) are never each other's in-batch negatives.
    topic: str | None = None

    @property
    def is_bitext(self) -> bool:
        """Query and label are the same text in two languages (translation pairs)."""
        return self.lang != self.label_lang

    def to_json(self) -> str:
        row = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(row, ensure_ascii=False)


def read_pairs(path: str | Path) -> list[Pair]:
    out: list[Pair] = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                out.append(
                    Pair(
                        query=str(row["query"]),
                        label=str(row["label"]),
                        lang=str(row.get("lang", "en")),
                        source=str(row.get("source", Path(path).stem)),
                        negative=row.get("negative"),
                        label_lang=str(row.get("label_lang", "en")),
                        negative_query=row.get("negative_query"),
                        topic=row.get("topic"),
                    )
                )
            except KeyError as exc:
                raise ValueError(f"{path}:{lineno}: missing field {exc}") from exc
    return out


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(p.to_json() + "\n")
            n += 1
    return n


def select_languages(
    pairs: Iterable[Pair], languages: Sequence[str]
) -> tuple[list[Pair], Counter[str]]:
    """The pairs in the training languages, and how many were left out per language."""
    allowed = set(languages)
    kept: list[Pair] = []
    left_out: Counter[str] = Counter()
    for p in pairs:
        if p.lang in allowed:
            kept.append(p)
        else:
            left_out[p.lang] += 1
    return kept, left_out


def attach_negative_queries(pairs: Sequence[Pair]) -> list[Pair]:
    """Give each hard negative its own query in the pair's query language, where one is known.

    CLEAR's reverse loss ranks a passage's target-language query against other target-language
    queries; the negative label's own query (from another pair of the same language) is the
    hard one.
    """
    by_label: dict[tuple[str, str], str] = {}
    for p in pairs:
        by_label.setdefault((" ".join(p.label.casefold().split()), p.lang), p.query)
    out: list[Pair] = []
    for p in pairs:
        if p.negative and p.negative_query is None:
            q = by_label.get((" ".join(p.negative.casefold().split()), p.lang))
            if q is not None:
                p = replace(p, negative_query=q)
        out.append(p)
    return out


def dedupe(pairs: Iterable[Pair]) -> list[Pair]:
    seen: set[tuple[str, str]] = set()
    out: list[Pair] = []
    for p in pairs:
        key = (p.query.strip().casefold(), p.label.strip().casefold())
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# --- the shop's FAQ -------------------------------------------------------------------------


def faq_pairs(path: str | Path) -> list[Pair]:
    """Each FAQ question as (label, label); the query gets code-switched during training."""
    path = Path(path)
    rows: list[dict[str, str]] = []
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    out: list[Pair] = []
    for row in rows:
        question = (row.get("question") or "").strip()
        if question:
            lang = (row.get("lang") or "en").strip() or "en"
            out.append(Pair(question, question, lang=lang, source="faq", label_lang=lang))
    return out


# --- django-oscar .po files -----------------------------------------------------------------

_PO_KEYWORD_RE = re.compile(r"^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+(\".*\")\s*$")
_PLACEHOLDER_RE = re.compile(r"%\([^)]*\)[sdif]|%[sdif]|\{[^}]*\}")
_HTML_RE = re.compile(r"<[^>]+>")


def parse_po(text: str) -> list[tuple[str, str, bool]]:
    """(msgid, msgstr, fuzzy) for each singular entry of a gettext .po file.

    The stdlib's `gettext` reads compiled .mo files only, so this reads the source format
    directly: keyword lines with C-escaped string literals and continuation lines.
    """
    entries: list[tuple[str, str, bool]] = []
    fields: dict[str, str] = {}
    fuzzy = False
    current: str | None = None

    def flush() -> None:
        nonlocal fields, fuzzy, current
        if "msgid" in fields and "msgid_plural" not in fields:
            entries.append((fields["msgid"], fields.get("msgstr", ""), fuzzy))
        fields, fuzzy, current = {}, False, None

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
            continue
        if line.startswith("#"):
            continue
        m = _PO_KEYWORD_RE.match(line)
        if m:
            if m.group(1) in ("msgctxt", "msgid") and "msgid" in fields:
                flush()
            current = m.group(1)
            fields[current] = ast.literal_eval(m.group(2))
        elif line.startswith('"') and current is not None:
            fields[current] += ast.literal_eval(line)
    flush()
    return entries


def _clean_ui_string(text: str) -> str:
    text = html.unescape(_HTML_RE.sub(" ", _PLACEHOLDER_RE.sub(" ", text)))
    return " ".join(text.split())


def _oscar_po_files(path: Path) -> Iterator[tuple[str, str]]:
    """(language code, .po text) from a django-oscar wheel/zip or an extracted directory."""
    pattern = re.compile(r"oscar/locale/([^/]+)/LC_MESSAGES/django\.po$")
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                m = pattern.search(name)
                if m:
                    yield m.group(1), zf.read(name).decode("utf-8")
    else:
        for po in sorted(path.rglob("django.po")):
            m = pattern.search(po.as_posix())
            if m:
                yield m.group(1), po.read_text(encoding="utf-8")


def normalise_lang(code: str) -> str:
    """`pt_BR` -> `pt`: training languages are chosen by language, not by region."""
    return code.replace("-", "_").split("_")[0].lower()


def oscar_pairs(
    path: str | Path,
    languages: Sequence[str] | None = None,
    *,
    min_words: int = 2,
    both_directions: bool = False,
) -> list[Pair]:
    """Translated interface string -> English string (and English -> translation if asked)."""
    out: list[Pair] = []
    wanted = set(languages) if languages is not None else None
    for code, text in _oscar_po_files(Path(path)):
        lang = normalise_lang(code)
        if lang == "en" or (wanted is not None and lang not in wanted):
            continue
        for msgid, msgstr, fuzzy in parse_po(text):
            src, tgt = _clean_ui_string(msgid), _clean_ui_string(msgstr)
            if fuzzy or not src or not tgt or src == tgt or len(src.split()) < min_words:
                continue
            out.append(Pair(tgt, src, lang=lang, source=f"oscar:{code}"))
            if both_directions:
                out.append(Pair(src, tgt, lang="en", source=f"oscar:{code}:rev", label_lang=lang))
    return out


# --- Debian Reference: paragraphs aligned by position ---------------------------------------

_PARA_RE = re.compile(r"<p[^>]*>(.*?)</p>", re.IGNORECASE | re.DOTALL)


def html_paragraphs(text: str) -> list[str]:
    return [" ".join(html.unescape(_HTML_RE.sub(" ", p)).split()) for p in _PARA_RE.findall(text)]


def aligned_paragraph_pairs(
    english_dir: str | Path,
    other_dir: str | Path,
    lang: str,
    *,
    en_suffix: str = ".en.html",
    other_suffix: str | None = None,
    min_words: int = 4,
) -> list[Pair]:
    """Pair the n-th paragraph of each English chapter with the n-th of its translation.

    Chapters whose paragraph counts differ are skipped: one missing paragraph would shift every
    pair after it and teach the model wrong alignments.
    """
    other_suffix = other_suffix or f".{lang}.html"
    out: list[Pair] = []
    skipped = 0
    for en_path in sorted(Path(english_dir).glob(f"*{en_suffix}")):
        chapter = en_path.name[: -len(en_suffix)]
        other_path = Path(other_dir) / f"{chapter}{other_suffix}"
        if not other_path.is_file():
            continue
        en_paras = html_paragraphs(en_path.read_text(encoding="utf-8", errors="replace"))
        xx_paras = html_paragraphs(other_path.read_text(encoding="utf-8", errors="replace"))
        if len(en_paras) != len(xx_paras):
            skipped += 1
            continue
        for en, xx in zip(en_paras, xx_paras, strict=True):
            if len(en.split()) >= min_words and en != xx:
                out.append(Pair(xx, en, lang=lang, source=f"debian-reference:{chapter}"))
    if skipped:
        log.info(
            "debian-reference %s: skipped %d chapters with unequal paragraph counts", lang, skipped
        )
    return out
