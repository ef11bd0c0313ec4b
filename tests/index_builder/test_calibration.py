"""The served abstain rule (`index_builder.answers.calibration`); its calibration on dev data:
tests/model_export/test_calibration.py."""

from __future__ import annotations

import numpy as np
import pytest

from index_builder.answers.calibration import AbstainRule, nearest


def unit(*rows: list[float]) -> np.ndarray:
    m = np.asarray(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_rule_lowers_the_score_by_the_nearest_anchor() -> None:
    anchors = unit([1.0, 0.0], [0.0, 1.0])
    rule = AbstainRule(min_score=0.5, offtopic_weight=0.5, anchors=anchors)
    query = unit([1.0, 0.0])[0]
    assert rule.answer_score(0.9, query) == pytest.approx(0.9 - 0.5 * 1.0)
    assert rule.answered(0.9, query) == (False, pytest.approx(0.4))
    # A per-request threshold overrides the calibrated one.
    assert rule.answered(0.9, query, min_score=0.3)[0] is True
    assert rule.answered(None, query) == (False, None)
    assert AbstainRule(None).answered(0.01, query) == (True, 0.01)
    assert AbstainRule(0.5, 0.0, anchors).answer_score(0.9, query) == 0.9


def test_nearest_leave_one_out() -> None:
    v = unit([1.0, 0.0], [0.8, 0.6], [0.0, 1.0])
    assert nearest(v, v).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert nearest(v, v, exclude_self=True).tolist() == pytest.approx([0.8, 0.8, 0.6])
    assert nearest(v, np.zeros((0, 2), np.float32)).tolist() == [-1.0, -1.0, -1.0]
