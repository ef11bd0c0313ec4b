"""Training pairs from a shop's search/click logs: `faq-model build-data --source logs`.

A log is CSV (with a header) or JSONL with one row per query: `query` and `faq_id` required,
`lang` and `clicks` optional. Each row becomes the pair (query -> the topic's English FAQ
question), and with `with_answers` also (query -> the topic's English answer), so the encoder
learns the shop's real queries against the texts the index holds.

Choices, and why:

* `faq_id` may name a topic (`order-cancel`) or one of its localised entries
  (`order-cancel.es`): the label is the topic's English entry either way, as the index answers a
  topic, and English labels are what the code-switching recipe pairs every language with. A topic
  without an English entry keeps its own entry's question and language.
* `clicks`: rows under `min_clicks` (default 1) are dropped, since a query whose FAQ answer was
  shown but never clicked is no evidence that the answer fits. Clicks do not repeat a pair: the
  trainer's dedupe would undo the repetition, and copies of one pair in a batch are false
  negatives of each other under in-batch losses. Rows without a click count are kept.
* The same query for the same topic on several rows is one pair (the log's repeats are counts,
  not new examples).
* A missing `lang` is detected: text in a script of one language goes by the script (Hangul ->
  ko, kana -> ja, Thai -> th, Devanagari -> hi, Han -> zh) because mixed-in English words make a
  statistical detector call short Asian-script queries English; everything else goes to Lingua
  (`lingua-language-detector`, offline models bundled in the wheel), restricted to the languages
  the shop serves, which is what makes it reliable on 2-10 word queries. Undecidable text is
  `und`, never guessed as English.
* A bad row stops the build with `file:line: what is wrong`; unknown `faq_id`s are counted and
  only stop it above `max_unknown` (a share of the valid rows), since a log usually outlives a
  few retired FAQ entries.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index_builder import faq as faq_file
from index_builder.faq import FaqFileError, topic_of
from model_export.guard_key import normalise
from model_export.shopper_data import LANGUAGES as SHOPPER_LANGUAGES
from model_export.training.data import Pair, normalise_lang

ENGLISH = "en"
UNDETERMINED = "und"
LOG_FIELDS = ("query", "faq_id")
# Detection languages by default: the FAQ's languages plus the shopper log's (a superset).
DEFAULT_DETECT_LANGUAGES: tuple[str, ...] = tuple(
    sorted({ENGLISH, "es", "pt", "fr", "de", "id", *SHOPPER_LANGUAGES})
)
DEFAULT_MAX_UNKNOWN = 0.05
UNKNOWN_EXAMPLES = 10


class LogError(ValueError):
    """A bad log row or file: the message starts with `file:line:` (or `file:`)."""


class UnknownIdsError(ValueError):
    """Too many rows name a `faq_id` that the FAQ does not have."""


@dataclass(frozen=True)
class LogRow:
    query: str
    faq_id: str
    lang: str | None
    clicks: int | None
    line: int


@dataclass(frozen=True)
class FaqEntry:
    id: str
    topic: str
    question: str
    answer: str
    lang: str


@dataclass
class LogSummary:
    rows: int = 0
    pairs: int = 0
    low_clicks_dropped: int = 0
    duplicates_merged: int = 0
    unknown_rows: int = 0
    unknown_ids: Counter[str] = field(default_factory=Counter)
    detected: int = 0
    by_lang: Counter[str] = field(default_factory=Counter)
    detected_by_lang: Counter[str] = field(default_factory=Counter)

    @property
    def unknown_share(self) -> float:
        return self.unknown_rows / self.rows if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "pairs": self.pairs,
            "low_clicks_dropped": self.low_clicks_dropped,
            "duplicates_merged": self.duplicates_merged,
            "by_lang": dict(sorted(self.by_lang.items())),
            "detected": self.detected,
            "detected_by_lang": dict(sorted(self.detected_by_lang.items())),
            "unknown_ids": {
                "rows": self.unknown_rows,
                "share": round(self.unknown_share, 4),
                "distinct": len(self.unknown_ids),
                "examples": [i for i, _ in self.unknown_ids.most_common(UNKNOWN_EXAMPLES)],
            },
        }


# --- reading ----------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    """A non-empty stripped string, or None for absent/empty/null values."""
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _clicks(where: str, raw: object) -> int | None:
    """A click count: a whole number >= 0 (JSON number or CSV digits); None when absent/empty."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    else:
        raise LogError(f"{where}: clicks must be a whole number >= 0, got {raw!r}")
    if value < 0:
        raise LogError(f"{where}: clicks must be a whole number >= 0, got {raw!r}")
    return value


def _row(path: Path, line: int, raw: dict[str, Any]) -> LogRow:
    where = f"{path}:{line}"
    query = raw.get("query")
    faq_id = raw.get("faq_id")
    if "query" not in raw:
        raise LogError(f"{where}: missing field 'query'")
    if "faq_id" not in raw:
        raise LogError(f"{where}: missing field 'faq_id'")
    if not isinstance(query, str) or not query.strip():
        raise LogError(f"{where}: empty query")
    faq_text = _text(faq_id)
    if faq_text is None:
        raise LogError(f"{where}: empty faq_id")
    lang_raw = raw.get("lang")
    if lang_raw is not None and not isinstance(lang_raw, str):
        raise LogError(f"{where}: lang must be a language code, got {lang_raw!r}")
    lang = normalise_lang(lang_raw.strip()) if lang_raw and lang_raw.strip() else None
    if lang is not None and not (lang.isascii() and lang.isalpha() and 2 <= len(lang) <= 3):
        raise LogError(f"{where}: lang must be a language code (de, pt-BR), got {lang_raw!r}")
    clicks = _clicks(where, raw.get("clicks"))
    return LogRow(" ".join(query.split()), faq_text, lang, clicks, line)


def read_log(path: str | Path) -> Iterator[LogRow]:
    """The rows of a CSV (`.csv`) or JSONL (`.jsonl`, `.ndjson`) log; `LogError` on a bad one."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                header = reader.fieldnames or []
                for f in LOG_FIELDS:
                    if f not in header:
                        raise LogError(f"{path}:1: missing column {f!r} (header: {header})")
                for raw in reader:
                    if None in raw:  # more cells than the header names
                        raise LogError(f"{path}:{reader.line_num}: more cells than columns")
                    yield _row(path, reader.line_num, raw)
        elif suffix in (".jsonl", ".ndjson"):
            with path.open(encoding="utf-8") as fh:
                for line, text in enumerate(fh, 1):
                    if not text.strip():
                        continue
                    try:
                        raw = json.loads(text)
                    except json.JSONDecodeError as exc:
                        raise LogError(f"{path}:{line}: bad JSON ({exc.msg})") from exc
                    if not isinstance(raw, dict):
                        raise LogError(f"{path}:{line}: not a JSON object")
                    yield _row(path, line, raw)
        else:
            raise LogError(f"{path}: unknown log format {suffix!r}: use .csv or .jsonl")
    except FileNotFoundError as exc:
        raise LogError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise LogError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise LogError(f"{path}: bad CSV ({exc})") from exc


def read_faq(path: str | Path) -> dict[str, FaqEntry]:
    """The FAQ's entries by id, read and validated as `faq-index build` reads them.

    A log is joined to the FAQ the service indexes, so the same reader decides what a valid FAQ
    is; its `file:line: what` errors come back as `LogError`.
    """
    try:
        items = faq_file.read_faq(Path(path))
    except FaqFileError as exc:
        raise LogError(str(exc)) from None
    return {
        i.id: FaqEntry(i.id, topic_of(i.id), i.question, i.answer, normalise_lang(i.lang))
        for i in items
    }


def topic_labels(entries: dict[str, FaqEntry]) -> dict[str, FaqEntry]:
    """Each topic's label entry: its English entry, else its first entry."""
    out: dict[str, FaqEntry] = {}
    for e in entries.values():
        if e.topic not in out or (e.lang == ENGLISH and out[e.topic].lang != ENGLISH):
            out[e.topic] = e
    return out


# --- language detection -------------------------------------------------------------------------

# Scripts written by one language among those a shop serves; kana before Han (Japanese uses both).
_SCRIPT_RANGES: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("ja", ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))),
    ("ko", ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F))),
    ("th", ((0x0E00, 0x0E7F),)),
    ("hi", ((0x0900, 0x097F),)),
    ("zh", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF))),
)


def script_language(text: str, allowed: Sequence[str]) -> str | None:
    """The language a non-Latin script gives away, among `allowed`; None if no such script."""
    present = {
        lang
        for lang, ranges in _SCRIPT_RANGES
        for c in text
        if any(lo <= ord(c) <= hi for lo, hi in ranges)
    }
    for lang, _ in _SCRIPT_RANGES:
        if lang in present and lang in allowed:
            return lang
    # Han alone and Chinese not served: Japanese is the other Han language a shop may serve.
    if "zh" in present and "ja" in allowed:
        return "ja"
    return None


class LanguageDetector:
    """Script rules, then Lingua restricted to `languages` (ISO 639-1 codes)."""

    def __init__(self, languages: Sequence[str] = DEFAULT_DETECT_LANGUAGES) -> None:
        self.languages = tuple(dict.fromkeys(normalise_lang(c) for c in languages))
        if not self.languages:
            raise ValueError("language detection needs at least one language")
        self._detector: Any = None
        self._codes: dict[Any, str] = {}

    def _lingua(self) -> Any:
        if self._detector is None:
            try:
                from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
            except ImportError as exc:  # pragma: no cover - the train extra installs it
                raise ValueError(
                    "language detection needs lingua-language-detector (the `train` extra); "
                    "or give every row a lang"
                ) from exc
            langs = []
            for code in self.languages:
                try:
                    lang = Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
                except ValueError as exc:
                    raise ValueError(f"the language detector has no model for {code!r}") from exc
                langs.append(lang)
                self._codes[lang] = code
            self._detector = LanguageDetectorBuilder.from_languages(*langs).build()
        return self._detector

    def detect(self, text: str) -> str:
        by_script = script_language(text, self.languages)
        if by_script is not None:
            return by_script
        if len(self.languages) == 1:
            return self.languages[0]
        found = self._lingua().detect_language_of(text)
        return self._codes.get(found, UNDETERMINED) if found is not None else UNDETERMINED


# --- building -----------------------------------------------------------------------------------


def build_log_pairs(
    log_path: str | Path,
    faq_path: str | Path,
    *,
    with_answers: bool = False,
    min_clicks: int = 1,
    max_unknown: float = DEFAULT_MAX_UNKNOWN,
    detect_languages: Sequence[str] = DEFAULT_DETECT_LANGUAGES,
) -> tuple[list[Pair], LogSummary]:
    """Pairs from a log joined to an FAQ, and what happened to each row.

    Raises `LogError` on a bad row/file and `UnknownIdsError` when the share of rows with an
    unknown `faq_id` exceeds `max_unknown`.
    """
    return pairs_from_rows(
        read_log(log_path),
        faq_path,
        str(log_path),
        with_answers=with_answers,
        min_clicks=min_clicks,
        max_unknown=max_unknown,
        detect_languages=detect_languages,
    )


def pairs_from_rows(
    rows: Iterable[LogRow],
    faq_path: str | Path,
    name: str,
    *,
    source: str = "logs",
    with_answers: bool = False,
    min_clicks: int = 1,
    max_unknown: float = DEFAULT_MAX_UNKNOWN,
    detect_languages: Sequence[str] = DEFAULT_DETECT_LANGUAGES,
) -> tuple[list[Pair], LogSummary]:
    """`build_log_pairs` on rows from anywhere (`name` says where, in errors); the pairs'
    source is `source` (with `:answer` for the answer pairs)."""
    entries = read_faq(faq_path)
    labels = topic_labels(entries)
    detector: LanguageDetector | None = None
    summary = LogSummary()
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        summary.rows += 1
        entry = entries.get(row.faq_id)
        label = labels.get(entry.topic if entry else row.faq_id)
        if label is None:
            summary.unknown_rows += 1
            summary.unknown_ids[row.faq_id] += 1
            continue
        if row.clicks is not None and row.clicks < min_clicks:
            summary.low_clicks_dropped += 1
            continue
        key = (normalise(row.query), label.topic)
        if key in seen:
            summary.duplicates_merged += 1
            continue
        seen.add(key)
        lang = row.lang
        if lang is None:
            detector = detector or LanguageDetector(detect_languages)
            lang = detector.detect(row.query)
            summary.detected += 1
            summary.detected_by_lang[lang] += 1
        summary.by_lang[lang] += 1
        targets = [(label.question, source)]
        if with_answers and label.answer:
            targets.append((label.answer, f"{source}:answer"))
        pairs.extend(
            Pair(row.query, text, lang, source, label_lang=label.lang, topic=label.topic)
            for text, source in targets
        )
    if summary.unknown_share > max_unknown:
        examples = ", ".join(i for i, _ in summary.unknown_ids.most_common(5))
        raise UnknownIdsError(
            f"{name}: {summary.unknown_rows} of {summary.rows} rows "
            f"({summary.unknown_share:.1%}) name a faq_id that {faq_path} does not have "
            f"(e.g. {examples}); above --max-unknown {max_unknown:g}"
        )
    summary.pairs = len(pairs)
    return pairs, summary


# --- the service's query log (FAQ_QUERY_LOG) ------------------------------------------------------


def querylog_rows(db_url: str) -> Iterator[LogRow]:
    """The logged searches a shopper confirmed, as log rows (`line`: the search's id): one per
    answer clicked, else the first answer shown when voted helpful. A search voted not helpful
    gives none, its clicks included (the shopper said the answer did not help). The language is
    left to the export's detector, whose script rules read short Asian-script queries better
    than the service's."""
    from itertools import groupby

    from sqlalchemy import exc, select
    from sqlalchemy.engine import make_url

    from index_builder.querylog import connect, feedback, searches

    try:
        url = make_url(db_url)
    except exc.ArgumentError as error:
        raise LogError(f"{db_url}: not a database URL ({error})") from None
    # connect() would make a new, empty file: a mistyped path must not export nothing quietly.
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise LogError(f"{db_url}: no such SQLite file")
    try:
        engine = connect(db_url)
    except exc.DBAPIError as error:
        raise LogError(f"{db_url}: cannot open the query log ({error.orig})") from None
    query = (
        select(searches.c.id, searches.c.query, searches.c.top_id, feedback.c.clicked_id)
        .add_columns(feedback.c.helpful)
        .join(feedback, feedback.c.search_id == searches.c.id)
        .order_by(searches.c.id)
    )
    try:
        with engine.connect() as conn:
            for (search_id, text, top_id), group in groupby(
                conn.execute(query), key=lambda r: (r[0], r[1], r[2])
            ):
                events = [(clicked, helpful) for *_, clicked, helpful in group]
                if any(helpful is False for _, helpful in events):
                    continue
                clicked = sorted({c for c, _ in events if c})
                if not clicked and top_id is not None and any(h for _, h in events):
                    clicked = [top_id]
                for faq_id in clicked:
                    yield LogRow(" ".join(text.split()), faq_id, None, None, search_id)
    finally:
        engine.dispose()
