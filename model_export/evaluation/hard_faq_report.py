"""R@1 on the hard FAQ by subset: all, code-mixed, romanised, monolingual, English.

`faq-model eval` groups its results by (language, kind); the hard FAQ also asks for the queries
written in a script that is not their language's own (Hinglish and the like), which the task
evaluation does not know about. Rather than encode anything again, this reads the evaluation's
`results.json` (the gold topic's rank per query, in the query file's order) beside the query
file it scored, checks that they belong together (the SHA-256 the evaluation recorded), and
pools R@1 over each subset with a 95% bootstrap interval.

    python -m model_export.evaluation.hard_faq_report artifacts/eval-hard/results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_export.evaluation.metrics import bootstrap_ci
from model_export.hard_faq import HardQuery, load_queries

# Subset name -> membership test; the names are the report's (and summary.json's) keys.
SUBSETS: dict[str, Callable[[HardQuery], bool]] = {
    "all": lambda q: True,
    "code_mixed": lambda q: q.kind == "code_mixed",
    "romanised": lambda q: q.romanised,
    "monolingual": lambda q: q.kind == "monolingual",
    "english": lambda q: q.kind == "english",
}


class ReportError(ValueError):
    """results.json and the query file do not belong together."""


def breakdown(
    report: dict[str, Any],
    queries: Sequence[HardQuery],
    *,
    queries_bytes: bytes,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> subset -> {n, r1, r1_ci}: R@1 as fractions, from the ranks in `report`."""
    sha = hashlib.sha256(queries_bytes).hexdigest()
    if report.get("queries_sha256") != sha:
        raise ReportError(
            f"results.json scored {report.get('queries')!r} (sha256 "
            f"{str(report.get('queries_sha256'))[:12]}), not this query file ({sha[:12]})"
        )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for model, ranks in report["ranks"].items():
        if len(ranks) != len(queries):
            raise ReportError(f"model {model}: {len(ranks)} ranks for {len(queries)} queries")
        hit = np.array([float(r == 1) for r in ranks])
        rows: dict[str, dict[str, Any]] = {}
        for name, member in SUBSETS.items():
            idx = np.array([i for i, q in enumerate(queries) if member(q)], dtype=np.intp)
            values = hit[idx]
            lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            mean = float(values.mean()) if values.size else float("nan")
            rows[name] = {
                "n": int(idx.size),
                "r1": round(mean, 4),
                "r1_ci": [round(lo, 4), round(hi, 4)],
            }
        out[model] = rows
    return out


def to_markdown(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    models = list(table)
    names = list(SUBSETS)
    lines = [
        "| model | " + " | ".join(f"{n} R@1" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in models:
        cells = [
            f"{100 * c['r1']:.1f} [{100 * c['r1_ci'][0]:.1f}, {100 * c['r1_ci'][1]:.1f}]"
            for c in (table[m][n] for n in names)
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if models:
        ns = ", ".join(f"{n} {table[models[0]][n]['n']}" for n in names)
        lines += ["", f"Queries: {ns}. Percent, 95% bootstrap interval over queries."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", type=Path, help="results.json written by `faq-model eval`")
    ap.add_argument(
        "--queries", type=Path, default=None, help="the query file it scored (default: its own)"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    report = json.loads(args.results.read_text(encoding="utf-8"))
    path = args.queries or Path(report["queries"])
    table = breakdown(report, load_queries(path, faq=None), queries_bytes=path.read_bytes())
    print(json.dumps(table, indent=2) if args.json else to_markdown(table))


if __name__ == "__main__":
    main()
