"""Abstain calibration on dev data (`model_export.calibration`): the calibration, the data
(the served rule: tests/index_builder/test_calibration.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_export.calibration import (
    OFFTOPIC_QUERIES,
    CalibrationDataError,
    calibrate,
    load_labelled,
    load_offtopic,
    matched,
    offtopic_split,
    threshold_for,
)

REPO = Path(__file__).resolve().parents[2]


def test_threshold_refuses_at_most_the_budget() -> None:
    scores = np.linspace(0.5, 0.99, 100)
    t = threshold_for(scores, 0.02)
    assert np.mean(scores < t) == pytest.approx(0.02)
    assert threshold_for(scores, 0.0) == scores.min()
    with pytest.raises(CalibrationDataError):
        threshold_for(np.array([]), 0.02)


def test_a_variant_matched_to_the_reference_decides_like_it() -> None:
    # A quantised variant: the reference's scores a little lower, and a little noisy.
    rng = np.random.default_rng(1)
    reference = np.linspace(0.0, 1.0, 201)
    variant = reference - 0.02 + rng.normal(0.0, 0.002, reference.size)
    result = matched(reference, 0.3025, variant, answerable=100, weight=0.5)
    ref_below, below = reference < 0.3025, variant < result.min_score
    assert below.sum() == ref_below.sum()  # as many queries below as under the reference
    assert (below == ref_below).mean() >= 0.99  # and nearly all the same ones
    assert result.min_score == pytest.approx(0.2825, abs=0.005)
    # The first 100 are the answerable ones: refused; the rest off-topic: abstained.
    assert result.refused == pytest.approx(float(np.mean(below[:100])))
    assert result.abstained == pytest.approx(float(np.mean(below[100:])))
    assert (result.offtopic_weight, result.trials[0].min_score) == (0.5, result.min_score)


def test_calibration_picks_the_weight_that_separates_off_topic_queries() -> None:
    # Answerable: high top score, low anchor similarity. Off-topic: the same top scores (raw
    # scores cannot tell them apart) but close to an anchor.
    rng = np.random.default_rng(0)
    top = rng.uniform(0.80, 0.90, 200)
    result = calibrate(
        top,
        rng.uniform(0.2, 0.3, 200),
        rng.uniform(0.80, 0.90, 100),
        rng.uniform(0.8, 0.9, 100),
        refusal_budget=0.02,
        weights=(0.0, 0.5, 1.0),
    )
    raw = next(t for t in result.trials if t.weight == 0.0)
    assert raw.abstained < 0.2
    assert result.offtopic_weight > 0.0
    assert result.abstained > 0.95
    assert result.refused <= 0.02
    with pytest.raises(ValueError, match="refusal_budget"):
        calibrate(top, top, top, top, refusal_budget=1.0)


def test_offtopic_split_depends_on_the_normalised_text_only() -> None:
    texts = [f"Query number {i}  about the Weather" for i in range(64)]
    assert [offtopic_split(t) for t in texts] == [
        offtopic_split(" " + t.upper().replace(" ", "   ") + " ") for t in texts
    ]
    assert {offtopic_split(t) for t in texts} == {"dev", "test"}


def test_offtopic_split_is_stable_and_both_splits_are_big_enough() -> None:
    all_rows = load_offtopic(None)
    dev, test = load_offtopic("dev"), load_offtopic("test")
    assert len(all_rows) >= 150
    assert len(dev) + len(test) == len(all_rows)
    assert len(test) >= 100  # the Done-when figure is over at least 100 queries
    assert not {q.query for q in dev} & {q.query for q in test}
    kinds = {q.kind for q in all_rows}
    assert {"weather", "greeting", "gibberish", "other_domain"} <= kinds
    langs = {q.lang for q in all_rows}
    assert {"es", "de", "fr", "id", "hi", "zh", "ja", "th"} <= langs
    assert any(q.code_mixed for q in all_rows)


def test_offtopic_queries_are_unique_and_not_shopper_queries() -> None:
    rows = [json.loads(line) for line in OFFTOPIC_QUERIES.read_text("utf-8").splitlines()]
    texts = [" ".join(r["query"].casefold().split()) for r in rows]
    assert len(texts) == len(set(texts))
    shopper = {
        " ".join(json.loads(line)["query"].casefold().split())
        for line in (REPO / "data/shopper/queries.jsonl").read_text("utf-8").splitlines()
    }
    assert not set(texts) & shopper


def test_bad_data_files_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"query": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(CalibrationDataError, match=r"x.jsonl:2: invalid JSON"):
        load_offtopic(None, bad)
    bad.write_text('{"query": "a"}\n', encoding="utf-8")
    with pytest.raises(CalibrationDataError, match="faq_id"):
        load_labelled(bad)
    with pytest.raises(CalibrationDataError, match="not found"):
        load_labelled(tmp_path / "missing.jsonl")
    bad.write_text("\n", encoding="utf-8")
    with pytest.raises(CalibrationDataError, match="no queries"):
        load_offtopic(None, bad)
