"""The chaos suite's report: every fault test adds its row; the session writes
artifacts/chaos/results.{json,md} (`make chaos`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.faults import ANSWER_LIMIT_S, COLUMNS

OUT = Path(__file__).resolve().parents[2] / "artifacts" / "chaos"


@pytest.fixture(scope="session")
def chaos_report() -> Iterator[list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    yield rows
    if not rows:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    body = {"answer_limit_s": ANSWER_LIMIT_S, "faults": rows}
    (OUT / "results.json").write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    lines = [
        "# Fault injection (`make chaos`)",
        "",
        f"A request is past its deadline when answered after {ANSWER_LIMIT_S} s (the encoder's "
        "deadline plus the store's, FAQ_BATCH_DEADLINE_S = 1 s each, plus 0.5 s). Recovery: "
        "from the fault's end to the first good answer. Status 0: the connection dropped (the "
        "process was killed under that request).",
        "",
        "| fault | " + " | ".join(COLUMNS[1:]) + " | notes |",
        "|---|" + "---:|" * (len(COLUMNS) - 1) + "---|",
    ]
    for row in rows:
        cells = [str(row[c]) for c in COLUMNS]
        statuses = ", ".join(f"{k}: {v}" for k, v in row["statuses"].items())
        notes = "; ".join(x for x in (f"statuses {statuses}", row.get("notes", "")) if x)
        lines.append("| " + " | ".join(cells) + f" | {notes} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
