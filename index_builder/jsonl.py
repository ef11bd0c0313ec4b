"""JSON Lines read the same way everywhere in the runtime: one object per line, blank lines
skipped, and a bad line reported with its 1-based number through the caller's own error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any


def json_objects(
    text: str, error: Callable[[int, str], Exception]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line; `error(lineno, message)` for a bad line."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(lineno, f"invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise error(lineno, "expected a JSON object per line")
        yield lineno, row
