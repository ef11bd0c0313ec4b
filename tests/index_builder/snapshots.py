"""Snapshots of plain rows for the search tests: the shape matters, the payload does not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index_builder.store.base import Row
from index_builder.store.matrix import MatrixSnapshot, Sparse


def hybrid_snapshot(
    questions: NDArray[np.floating[Any]],
    answers: NDArray[np.floating[Any]],
    lexical: Sequence[Sparse],
    **options: Any,
) -> MatrixSnapshot:
    """A hybrid snapshot whose row i is entry `e-<i>` (English, no market); `options`: the
    constructor's keyword arguments (large_rows, answer_weight)."""
    rows = [Row(f"e-{i}", "q", "a", "en", None, (), "") for i in range(len(questions))]
    return MatrixSnapshot(
        "c", [r.id for r in rows], questions, rows, answers=answers, lexical=lexical, **options
    )
