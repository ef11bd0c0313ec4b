"""The hard FAQ (`data/hard_faq/`): confusable topics, shopper queries, a stratified split.

A second FAQ, written so that retrieval can fail: 154 topics in groups of neighbours that share
their vocabulary (return cost / how to return / refund of the delivery fee, cash on delivery /
its fee / its limit / payment methods, invoice / receipt / tax invoice, installments / pay later,
address before / after shipping, late / lost / damaged parcel, ...), each in English and five
translations, and shopper queries labelled with the topic. `data/hard_faq/README.md` says how it
was made and counts it.

Queries use the shopper log's schema (`model_export.shopper_data`: query, faq_id as the topic,
lang, kind) plus `script`, the ISO 15924 code (lower case) of the script the query is written
in. A query is *romanised* when that script is not its language's usual one (`NATIVE_SCRIPTS`):
Hindi, Bengali, Urdu or Marathi typed in Latin letters. The task evaluation reads these files
with the shopper loader, which ignores the extra field.

The split is stratified by topic: within each topic the queries are ordered by a salted SHA-256
of their normalised text (the evaluation guard's key) and the first 40% go to train, the next
15% to dev, the rest to test, so every topic is in every split and re-ordering the file changes
nothing. The dev and test texts are a source of the evaluation guard
(`model_export.eval_guard`), like the shopper log's: no training pair may contain them.

Stdlib only (plus the FAQ id helper): the guard imports this without the `train` extra.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from index_builder.faq import topic_of
from model_export import shopper_data
from model_export.guard_key import normalise
from model_export.shopper_data import KINDS, SPLITS, Split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "data" / "hard_faq"
DEFAULT_FAQ = DEFAULT_DIR / "faq.jsonl"
DEFAULT_QUERIES = DEFAULT_DIR / "queries.jsonl"
GUARDED_SPLITS: tuple[Split, ...] = ("dev", "test")

# The usual script of each query language (ISO 15924, lower case). Japanese mixes kana and kanji
# (jpan), Chinese is simplified (hans), Korean is hangul (kore).
NATIVE_SCRIPTS = {
    "en": "latn", "es": "latn", "pt": "latn", "fr": "latn", "de": "latn", "tr": "latn",
    "id": "latn", "ms": "latn", "tl": "latn", "vi": "latn",
    "hi": "deva", "mr": "deva", "bn": "beng", "ur": "arab",
    "ja": "jpan", "zh": "hans", "ko": "kore",
}  # fmt: skip
# Unicode character-name prefixes of each script's letters, to check a query's `script` field
# against its text (a romanised query holds no letter of another script, a native one at least
# one letter of its own).
_SCRIPT_LETTERS = {
    "latn": ("LATIN",),
    "deva": ("DEVANAGARI",),
    "beng": ("BENGALI",),
    "arab": ("ARABIC",),
    "jpan": ("HIRAGANA", "KATAKANA", "CJK"),
    "hans": ("CJK",),
    "kore": ("HANGUL",),
}

# 40/15/45: more than 450 test queries from ~6 per topic; every topic keeps one dev query.
TRAIN_SHARE = 0.40
DEV_SHARE = 0.15
# Changing the salt re-draws every split; keep it fixed so published numbers stay comparable.
SPLIT_SALT = "hard-faq-split-v1"


@dataclass(frozen=True)
class HardQuery:
    query: str
    faq_id: str
    lang: str
    kind: str
    script: str

    @property
    def romanised(self) -> bool:
        return self.script != NATIVE_SCRIPTS[self.lang]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def _letter_scripts(text: str) -> set[str]:
    """The scripts (keys of `_SCRIPT_LETTERS`) whose letters occur in `text`."""
    found: set[str] = set()
    for c in text:
        if not unicodedata.category(c).startswith("L"):
            continue
        name = unicodedata.name(c, "")
        found.update(s for s, prefixes in _SCRIPT_LETTERS.items() if name.startswith(prefixes))
    return found


def script_matches(text: str, script: str) -> bool:
    """Whether `text` is written in `script`: only Latin letters for `latn`, otherwise at least one
    letter of the script (code-mixed queries carry Latin words beside it)."""
    found = _letter_scripts(text)
    if script == "latn":
        return found == {"latn"}
    return script in found


def load_queries(
    path: str | Path = DEFAULT_QUERIES, *, faq: str | Path | None = DEFAULT_FAQ
) -> list[HardQuery]:
    """Every query of a file, validated; the first bad line raises `ValueError(file:line: ...)`.

    The shopper loader checks the four shared fields (known kind, `english` exactly for `en`,
    the topic in `faq` unless None, no two queries the same once normalised); here `lang` must
    be one of `NATIVE_SCRIPTS` and `script` must be a known script that the text is written in.
    """
    path = Path(path)
    shared = shopper_data.load_queries(path, faq=faq)
    rows = [
        (lineno, json.loads(line))
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    ]
    out: list[HardQuery] = []
    for q, (lineno, row) in zip(shared, rows, strict=True):
        script = row.get("script")
        if q.lang not in NATIVE_SCRIPTS:
            raise ValueError(f"{path}:{lineno}: unknown lang {q.lang!r}")
        if script not in _SCRIPT_LETTERS:
            raise ValueError(
                f"{path}:{lineno}: script {script!r} is not one of {', '.join(_SCRIPT_LETTERS)}"
            )
        if not script_matches(q.query, script):
            raise ValueError(f"{path}:{lineno}: the text is not written in script {script!r}")
        out.append(HardQuery(q.query, q.faq_id, q.lang, q.kind, script))
    return out


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by the normalised text (SHA-256: the same on every run/machine)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}\0{normalise(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _sizes(n: int) -> tuple[int, int]:
    """(train, dev) counts of a topic with n queries; test takes the rest. Rounded half up (not
    Python's half-to-even), and one dev query for any topic of three or more."""
    n_train = int(n * TRAIN_SHARE + 0.5)
    n_dev = max(int(n * DEV_SHARE + 0.5), 1 if n >= 3 else 0)
    return n_train, n_dev


def split(queries: Iterable[HardQuery]) -> dict[Split, list[HardQuery]]:
    """The queries of each split, stratified by topic; each split sorted by
    (faq_id, lang, kind, query), so the input order is moot."""
    by_topic: dict[str, list[HardQuery]] = defaultdict(list)
    for q in queries:
        by_topic[q.faq_id].append(q)
    out: dict[Split, list[HardQuery]] = {s: [] for s in SPLITS}
    for qs in by_topic.values():
        ordered = sorted(qs, key=lambda q: (_unit(q.query), normalise(q.query)))
        n_train, n_dev = _sizes(len(ordered))
        out["train"] += ordered[:n_train]
        out["dev"] += ordered[n_train : n_train + n_dev]
        out["test"] += ordered[n_train + n_dev :]
    for qs in out.values():
        qs.sort(key=lambda q: (q.faq_id, q.lang, q.kind, q.query))
    return out


def split_of(queries: Sequence[HardQuery]) -> dict[HardQuery, Split]:
    return {q: name for name, qs in split(queries).items() for q in qs}


def write_splits(queries: Sequence[HardQuery], out_dir: str | Path) -> dict[Split, int]:
    """Write `train.jsonl`, `dev.jsonl`, `test.jsonl` under `out_dir`; how many went to each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[Split, int] = {}
    for name, qs in split(queries).items():
        (out_dir / f"{name}.jsonl").write_text(
            "".join(q.to_json() + "\n" for q in qs), encoding="utf-8"
        )
        counts[name] = len(qs)
    return counts


def guarded_texts(hard_dir: str | Path = DEFAULT_DIR) -> list[str]:
    """The dev and test query texts, for the evaluation guard.

    Both the split recomputed from `queries.jsonl` and the committed `dev.jsonl`/`test.jsonl`
    count, so a stale split file or a query added without re-running `write_splits` still cannot
    leak. A missing directory gives nothing (an installed package without the data).
    """
    hard_dir = Path(hard_dir)
    texts: list[str] = []
    queries = hard_dir / "queries.jsonl"
    if queries.is_file():
        parts = split(load_queries(queries, faq=None))
        texts.extend(q.query for name in GUARDED_SPLITS for q in parts[name])
    for name in GUARDED_SPLITS:
        path = hard_dir / f"{name}.jsonl"
        if path.is_file():
            texts.extend(q.query for q in load_queries(path, faq=None))
    return texts


@dataclass(frozen=True)
class FaqStats:
    """What the dataset's invariants are stated over (tests and README)."""

    topics: int
    entries: int
    # topic -> languages other than English it is translated into
    translations: dict[str, frozenset[str]]


def faq_stats(faq_path: str | Path = DEFAULT_FAQ) -> FaqStats:
    langs: dict[str, set[str]] = defaultdict(set)
    entries = 0
    with Path(faq_path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                langs[topic_of(str(row["id"]))].add(str(row["lang"]))
                entries += 1
    return FaqStats(
        topics=len(langs),
        entries=entries,
        translations={t: frozenset(ls - {"en"}) for t, ls in langs.items()},
    )


def counts(queries: Sequence[HardQuery]) -> dict[str, object]:
    """Totals per language, kind, script and split (printed by `main`)."""
    where = split_of(queries)
    return {
        "queries": len(queries),
        "topics": len({q.faq_id for q in queries}),
        "lang": dict(sorted(Counter(q.lang for q in queries).items())),
        "kind": dict(sorted(Counter(q.kind for q in queries).items())),
        "romanised": sum(q.romanised for q in queries),
        "split": {s: sum(1 for v in where.values() if v == s) for s in SPLITS},
    }


def counts_table(queries: Sequence[HardQuery]) -> str:
    """The README's per-language table: kinds, romanised, splits, with a total row."""
    where = split_of(queries)
    rows: dict[str, Counter[str]] = {}
    for q in queries:
        c = rows.setdefault(q.lang, Counter())
        c.update(("all", q.kind, where[q]))
        if q.romanised:
            c["romanised"] += 1
    cols = ("all", *KINDS, "romanised", *SPLITS)
    lines = ["| lang | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    total: Counter[str] = Counter()
    for lang in sorted(rows, key=lambda lang: (lang != "en", lang)):
        total.update(rows[lang])
        lines.append(f"| {lang} | " + " | ".join(str(rows[lang][c]) for c in cols) + " |")
    lines.append("| **all** | " + " | ".join(str(total[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m model_export.hard_faq`: validate, rewrite the split files, print counts."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    ap.add_argument("--faq", type=Path, default=DEFAULT_FAQ)
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--table", action="store_true", help="print the README table instead")
    args = ap.parse_args(argv)
    queries = load_queries(args.queries, faq=args.faq)
    if args.table:
        print(counts_table(queries))
        return
    write_splits(queries, args.out)
    print(json.dumps(counts(queries), indent=2))


if __name__ == "__main__":
    main()
