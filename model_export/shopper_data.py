"""The shopper query log for the sample FAQ: loading, validation and a stable train/dev/test split.

`data/shopper/queries.jsonl` holds short, informal queries written as shoppers write them (typos,
abbreviations, English mixed into the sentence) for every topic of `data/faq.jsonl`, one JSON
object a line: `{"query", "faq_id", "lang", "kind"}`. `faq_id` is the FAQ *topic* (the English
entry's id, `order-cancel`, not `order-cancel.es`): a query is answered by the topic whatever
language the shop shows it in. `data/shopper/README.md` says how the data was made.

The split is a function of the query text alone (SHA-256 of the text after the evaluation guard's
normalisation), so it survives re-ordering, additions and re-runs, and two near-duplicates (same
text once case, punctuation and spacing are ignored) always land in the same split: a test query
can never have its twin in train. Queries in `HELD_OUT_LANGUAGES` never go to train, so a model's
score on them measures what the code-switching dictionaries bring without any in-language
training query. The dev and test texts are a source of the evaluation guard
(`model_export.eval_guard`), which refuses them in any training pair.

Stdlib only: the guard and the data builders import this without the `train` extra.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from index_builder.faq import topic_of
from model_export.guard_key import normalise

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")
KINDS = ("monolingual", "code_mixed", "english")
FIELDS = ("query", "faq_id", "lang", "kind")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "data" / "shopper"
DEFAULT_QUERIES = DEFAULT_DIR / "queries.jsonl"
DEFAULT_FAQ = REPO / "data" / "faq.jsonl"
# The split files that are evaluation data, hence guarded out of training.
GUARDED_SPLITS: tuple[Split, ...] = ("dev", "test")

# The languages of the log (ISO 639-1; `hi` is Hindi written in Latin script, "Hinglish").
LANGUAGES = (
    "en", "es", "pt", "fr", "de", "it", "nl", "tr",
    "id", "ms", "tl", "vi", "th", "hi", "ja", "ko", "zh",
)  # fmt: skip
# Kept out of train entirely. Both have an English->X FreeDict dictionary installed here
# (freedict-eng-ita, freedict-eng-nld) that the code-switching recipe reads, and neither is a
# language of the FAQ: their dev/test scores show what the dictionaries alone bring.
HELD_OUT_LANGUAGES = frozenset({"it", "nl"})

# Shares of the hash range. 50/15/35 puts more than 500 queries in test with ~1,800 queries; the
# held-out languages split their queries 30/70 between dev and test (the same dev:test ratio).
TRAIN_SHARE = 0.50
DEV_SHARE = 0.15
HELD_OUT_DEV_SHARE = DEV_SHARE / (1.0 - TRAIN_SHARE)
# Changing the salt re-draws every split; keep it fixed so published numbers stay comparable.
SPLIT_SALT = "shopper-split-v1"


@dataclass(frozen=True)
class ShopperQuery:
    query: str
    faq_id: str
    lang: str
    kind: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def faq_topics(faq_path: str | Path = DEFAULT_FAQ) -> frozenset[str]:
    """The topic ids of an FAQ file: each entry's id without its language suffix."""
    topics: set[str] = set()
    with Path(faq_path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                topics.add(topic_of(str(json.loads(line)["id"])))
    return frozenset(topics)


def _fail(path: Path, lineno: int, what: str) -> ValueError:
    return ValueError(f"{path}:{lineno}: {what}")


def load_queries(
    path: str | Path = DEFAULT_QUERIES, *, faq: str | Path | None = DEFAULT_FAQ
) -> list[ShopperQuery]:
    """Every query of a log file, validated; the first bad line raises `ValueError(file:line: ...)`.

    Checked: JSON object, the four fields as non-empty strings, a known `kind`, `english` exactly
    when `lang` is `en`, `faq_id` a topic of `faq` (skipped when `faq` is None), and no two
    queries that are the same text once normalised (they would be one query counted twice,
    and with two labels an unanswerable one).
    """
    path = Path(path)
    topics = faq_topics(faq) if faq is not None else None
    out: list[ShopperQuery] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, lineno, f"bad JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise _fail(path, lineno, "not a JSON object")
            for f in FIELDS:
                value = row.get(f)
                if not isinstance(value, str) or not value.strip():
                    raise _fail(path, lineno, f"missing or empty field {f!r}")
            q = ShopperQuery(row["query"].strip(), row["faq_id"], row["lang"], row["kind"])
            if q.kind not in KINDS:
                raise _fail(path, lineno, f"unknown kind {q.kind!r} (one of {', '.join(KINDS)})")
            if (q.lang == "en") != (q.kind == "english"):
                raise _fail(
                    path,
                    lineno,
                    f"kind {q.kind!r} with lang {q.lang!r}: English queries are kind 'english' "
                    "and only they",
                )
            if topics is not None and q.faq_id not in topics:
                raise _fail(path, lineno, f"faq_id {q.faq_id!r} is not a topic of {faq}")
            key = normalise(q.query)
            if key in seen:
                raise _fail(path, lineno, f"same query as line {seen[key]} once normalised")
            seen[key] = lineno
            out.append(q)
    return out


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by the normalised text (SHA-256: the same on every run/machine)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}\0{normalise(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(query: ShopperQuery) -> Split:
    """train, dev or test from the query's normalised text; held-out languages never train."""
    u = _unit(query.query)
    if query.lang in HELD_OUT_LANGUAGES:
        return "dev" if u < HELD_OUT_DEV_SHARE else "test"
    if u < TRAIN_SHARE:
        return "train"
    return "dev" if u < TRAIN_SHARE + DEV_SHARE else "test"


def split(queries: Iterable[ShopperQuery]) -> dict[Split, list[ShopperQuery]]:
    """The queries of each split, sorted by (faq_id, lang, kind, query): input order is moot."""
    out: dict[Split, list[ShopperQuery]] = {s: [] for s in SPLITS}
    for q in queries:
        out[split_of(q)].append(q)
    for qs in out.values():
        qs.sort(key=lambda q: (q.faq_id, q.lang, q.kind, q.query))
    return out


def write_splits(queries: Iterable[ShopperQuery], out_dir: str | Path) -> dict[Split, int]:
    """Write `train.jsonl`, `dev.jsonl`, `test.jsonl` under `out_dir`; how many went to each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[Split, int] = {}
    for name, qs in split(queries).items():
        text = "".join(q.to_json() + "\n" for q in qs)
        (out_dir / f"{name}.jsonl").write_text(text, encoding="utf-8")
        counts[name] = len(qs)
    return counts


def guarded_texts(
    shopper_dir: str | Path = DEFAULT_DIR, splits: Sequence[Split] = GUARDED_SPLITS
) -> list[str]:
    """The dev and test query texts (or those of `splits`), for the evaluation guard.

    Both the split recomputed from `queries.jsonl` and the committed `dev.jsonl`/`test.jsonl`
    count, so a stale split file or a query added without re-running `write_splits` still
    cannot leak. A missing directory gives nothing (an installed package without the data).
    """
    shopper_dir = Path(shopper_dir)
    texts: list[str] = []
    queries = shopper_dir / "queries.jsonl"
    if queries.is_file():
        texts.extend(q.query for q in load_queries(queries, faq=None) if split_of(q) in splits)
    for name in splits:
        path = shopper_dir / f"{name}.jsonl"
        if path.is_file():
            texts.extend(q.query for q in load_queries(path, faq=None))
    return texts


def counts(queries: Sequence[ShopperQuery]) -> dict[str, dict[str, int]]:
    """Counts per language, kind, split, and language x split (for the README and the report)."""
    by_split = {q: split_of(q) for q in queries}
    lang_split: Counter[str] = Counter(f"{q.lang}/{by_split[q]}" for q in queries)
    return {
        "lang": dict(sorted(Counter(q.lang for q in queries).items())),
        "kind": dict(sorted(Counter(q.kind for q in queries).items())),
        "split": {s: sum(1 for v in by_split.values() if v == s) for s in SPLITS},
        "lang_split": dict(sorted(lang_split.items())),
    }


def counts_table(queries: Sequence[ShopperQuery]) -> str:
    """The README's per-language table: kinds and splits, with a total row."""
    rows: dict[str, Counter[str]] = {}
    for q in queries:
        c = rows.setdefault(q.lang, Counter())
        c[q.kind] += 1
        c[split_of(q)] += 1
        c["all"] += 1
    cols = ("all", *KINDS, *SPLITS)
    lines = ["| lang | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    total: Counter[str] = Counter()
    for lang in sorted(rows, key=lambda lang: (lang != "en", lang)):
        total.update(rows[lang])
        held = " (held out)" if lang in HELD_OUT_LANGUAGES else ""
        lines.append(f"| {lang}{held} | " + " | ".join(str(rows[lang][c]) for c in cols) + " |")
    lines.append("| **all** | " + " | ".join(str(total[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m model_export.shopper_data`: validate, rewrite the split files, print counts."""
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
