"""Human-written code-mixed text as training pairs: Hinglish-TOP's Hinglish -> English queries.

Issue 25 item 5: real code-mixed text where a public source allows it, for training and
development only. The source is Google Research's Hinglish-TOP (Apache-2.0; the English side is
TOPv2's): task-oriented assistant queries ("set alarm for 2 hours") with a Hinglish version
written by human annotators ("do ghante ke liye alarm set kardo"), Latin script, one TSV row
each: `en_query, cs_query, en_parse, cs_parse, domain`. Only its human-annotated *train* split is
read; data/codemixed/README.md says where the file comes from and under which terms.

`python -m model_export.codemixed --input train.tsv --out data/codemixed/hinglish-top.jsonl`
writes the committed pair file: each row becomes `Pair(query=Hinglish, label=English, lang="hi",
label_lang="en", source="hinglish-top")` (a translation pair, as the oscar ones are), rows whose
two sides are the same text dropped, duplicates dropped, and every pair whose Hinglish or English
text is an evaluation text (`model_export.eval_guard`: the shopper and hard FAQ dev/test splits,
the gap questions, `artifacts/eval`, the Debian FAQ) dropped before it is written. The trainer
guards the file again when it reads it (`data.train_files`), so a later evaluation set is kept
out too.

Stdlib only, like the other data builders.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model_export.eval_guard import EvalGuard
from model_export.guard_key import normalise
from model_export.training.data import Pair, dedupe, write_pairs

SOURCE = "hinglish-top"
# Hindi in Latin script: the shopper log's code for Hinglish (`model_export.shopper_data`).
LANG = "hi"
HEADER = ("en_query", "cs_query", "en_parse", "cs_parse", "domain")


class CodeMixedFormatError(ValueError):
    """A row of the source file is not what the format says; names the file and line."""


@dataclass(frozen=True)
class Row:
    english: str
    codemixed: str


def read_hinglish_top(path: str | Path) -> list[Row]:
    """The rows of a Hinglish-TOP TSV file (header first, five tab-separated columns)."""
    path = Path(path)
    rows: list[Row] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for lineno, cols in enumerate(reader, 1):
            if lineno == 1:
                if tuple(c.strip() for c in cols) != HEADER:
                    raise CodeMixedFormatError(
                        f"{path}:1: expected the header {'<TAB>'.join(HEADER)}, got {cols!r}"
                    )
                continue
            if not cols or not any(c.strip() for c in cols):
                continue
            if len(cols) != len(HEADER):
                raise CodeMixedFormatError(
                    f"{path}:{lineno}: expected {len(HEADER)} tab-separated columns "
                    f"({', '.join(HEADER)}), got {len(cols)}"
                )
            english, codemixed = " ".join(cols[0].split()), " ".join(cols[1].split())
            if not english or not codemixed:
                side = "en_query" if not english else "cs_query"
                raise CodeMixedFormatError(f"{path}:{lineno}: empty {side}")
            rows.append(Row(english, codemixed))
    if not rows:
        raise CodeMixedFormatError(f"{path}: no rows after the header")
    return rows


def _translations(rows: Sequence[Row]) -> list[Pair]:
    """Hinglish -> English translation pairs of the rows whose two sides are not one text."""
    return [
        Pair(r.codemixed, r.english, lang=LANG, source=SOURCE, label_lang="en")
        for r in rows
        if normalise(r.codemixed) != normalise(r.english)
    ]


def hinglish_pairs(rows: Sequence[Row]) -> list[Pair]:
    """Hinglish -> English translation pairs; same-text rows and duplicates dropped."""
    return dedupe(_translations(rows))


@dataclass
class BuildReport:
    rows: int
    same_text: int
    duplicates: int
    guard_dropped: int
    written: int


def build(input_path: str | Path, out: str | Path, guard: EvalGuard) -> BuildReport:
    """Read the source file, make the pairs, drop what the guard knows, write the pair file."""
    rows = read_hinglish_top(input_path)
    translations = _translations(rows)
    pairs = dedupe(translations)
    kept, dropped = guard.filter(pairs)
    written = write_pairs(kept, out)
    return BuildReport(
        rows=len(rows),
        same_text=len(rows) - len(translations),
        duplicates=len(translations) - len(pairs),
        guard_dropped=dropped,
        written=written,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_export.codemixed",
        description="Hinglish-TOP's human-annotated train split -> Hinglish->English pairs",
    )
    parser.add_argument(
        "--input", required=True, help="Hinglish-TOP 'Human Annotated Data/train.tsv'"
    )
    parser.add_argument("--out", required=True, help="the JSONL pair file to write")
    parser.add_argument(
        "--eval-dir",
        action="append",
        default=None,
        help="evaluation directory the guard reads (repeatable; default artifacts/eval)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    guard = EvalGuard.from_sources(args.eval_dir or ["artifacts/eval"], mode="drop")
    try:
        report = build(args.input, args.out, guard)
    except CodeMixedFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report.rows} rows: {report.same_text} with one text on both sides, "
        f"{report.duplicates} duplicates, {report.guard_dropped} dropped by the eval guard "
        f"({len(guard.texts)} texts from {', '.join(guard.sources)}); "
        f"{report.written} pairs -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
