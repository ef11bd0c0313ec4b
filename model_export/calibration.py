"""Abstain calibration on labelled dev data (`faq-model calibrate`): the dev and off-topic
files, and the weight and threshold of the served rule
(`index_builder.answers.calibration.AbstainRule`).

The served answer score is `top hit score - offtopic_weight * max_j cos(query, anchor_j)`, the
anchors being the off-topic dev split (`data/offtopic/`) encoded as passages. `calibrate` picks
the weight (from `WEIGHTS`) and `min_score` on dev data: for each weight, the highest threshold
that refuses at most `refusal_budget` of the answerable dev queries (the shopper dev split),
then the weight that abstains on most off-topic dev queries (each scored leave-one-out against
the other anchors). The test splits are never read here.

Stdlib and numpy only.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

# The thresholds and their error live with the served rule (a reindex picks one too); re-exported.
from index_builder.answers.calibration import DEFAULT_REFUSAL_BUDGET as DEFAULT_REFUSAL_BUDGET
from index_builder.answers.calibration import CalibrationDataError as CalibrationDataError
from index_builder.answers.calibration import Scores
from index_builder.answers.calibration import threshold_for as threshold_for
from index_builder.jsonl import json_objects

REPO = Path(__file__).resolve().parents[1]
OFFTOPIC_QUERIES = REPO / "data" / "offtopic" / "queries.jsonl"
SHOPPER_DIR = REPO / "data" / "shopper"

OffTopicSplit = Literal["dev", "test"]
# Share of the hash range that is dev; the rest is test. The salt is fixed so published figures
# stay comparable; changing either re-draws the split.
OFFTOPIC_DEV_SHARE = 0.40
OFFTOPIC_SALT = "offtopic-split-v1"

WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)


# --- data ---------------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split())


def offtopic_split(text: str) -> OffTopicSplit:
    """dev or test, a function of the text alone (stable under re-ordering and additions)."""
    digest = hashlib.sha256(f"{OFFTOPIC_SALT}\x1f{_normalise(text)}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "dev" if position < OFFTOPIC_DEV_SHARE else "test"


@dataclass(frozen=True)
class OffTopicQuery:
    query: str
    lang: str
    kind: str
    code_mixed: bool


@dataclass(frozen=True)
class LabelledQuery:
    """A shopper query and its topic (`faq_id` in data/shopper is the topic)."""

    query: str
    topic: str
    lang: str
    kind: str


def _jsonl(path: Path) -> list[tuple[int, dict[str, object]]]:
    if not path.is_file():
        raise CalibrationDataError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    rows = list(json_objects(text, lambda n, msg: CalibrationDataError(f"{path}:{n}: {msg}")))
    for lineno, row in rows:
        if not isinstance(row.get("query"), str):
            raise CalibrationDataError(f"{path}:{lineno}: expected an object with a query")
    if not rows:
        raise CalibrationDataError(f"{path}: no queries")
    return rows


def load_offtopic(
    split: OffTopicSplit | None = None, path: Path = OFFTOPIC_QUERIES
) -> list[OffTopicQuery]:
    """The off-topic queries of one split (both when `split` is None)."""
    out = [
        OffTopicQuery(
            query=str(row["query"]),
            lang=str(row.get("lang", "und")),
            kind=str(row.get("kind", "")),
            code_mixed=bool(row.get("code_mixed", False)),
        )
        for _, row in _jsonl(path)
    ]
    return [q for q in out if split is None or offtopic_split(q.query) == split]


def load_labelled(path: Path) -> list[LabelledQuery]:
    """A shopper split file (`data/shopper/{dev,test}.jsonl`)."""
    out = []
    for lineno, row in _jsonl(path):
        topic = row.get("faq_id") or row.get("topic")
        if not isinstance(topic, str) or not topic:
            raise CalibrationDataError(f"{path}:{lineno}: no faq_id (topic)")
        out.append(
            LabelledQuery(
                query=str(row["query"]),
                topic=topic,
                lang=str(row.get("lang", "")),
                kind=str(row.get("kind", "")),
            )
        )
    return out


# --- calibration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightTrial:
    weight: float
    min_score: float
    refused: float
    abstained: float


@dataclass(frozen=True)
class Calibration:
    min_score: float
    offtopic_weight: float
    refused: float
    abstained: float
    trials: list[WeightTrial]


def calibrate(
    answerable_top: Scores,
    answerable_background: Scores,
    offtopic_top: Scores,
    offtopic_background: Scores,
    *,
    refusal_budget: float = DEFAULT_REFUSAL_BUDGET,
    weights: Sequence[float] = WEIGHTS,
) -> Calibration:
    """Weight and threshold that abstain on most off-topic queries within the refusal budget.

    `*_top`: each query's top hit score; `*_background`: its highest similarity to the anchors
    (for the off-topic queries, leave-one-out when they are the anchors themselves).
    """
    if not 0.0 <= refusal_budget < 1.0:
        raise ValueError("refusal_budget must be in [0, 1)")
    if offtopic_top.size == 0:
        raise CalibrationDataError("no off-topic queries to calibrate on")
    trials = []
    for weight in weights:
        ans = answerable_top - weight * answerable_background
        off = offtopic_top - weight * offtopic_background
        threshold = threshold_for(ans, refusal_budget)
        trials.append(
            WeightTrial(
                weight=weight,
                min_score=threshold,
                refused=float(np.mean(ans < threshold)),
                abstained=float(np.mean(off < threshold)),
            )
        )
    # Most abstentions; on a tie the smaller weight (the simpler rule).
    best = max(trials, key=lambda t: (t.abstained, -t.weight))
    return Calibration(best.min_score, best.weight, best.refused, best.abstained, trials)


def matched(
    reference: Scores,
    reference_threshold: float,
    scores: Scores,
    answerable: int,
    weight: float,
) -> Calibration:
    """A variant's threshold that decides like a reference variant's rule: the same share of
    the dev queries below it (`reference` and `scores`: the same queries, answerable first,
    each variant's answer scores at the reference's weight).

    Why not the variant's own refusal budget: a quantised variant separates a little less, so
    at the same 2% of refused shoppers it abstained on 74.5% of the off-topic dev split where
    fp32 did on 83.4% (base model, int8). Its scores are the reference's slightly moved, and
    the same quantile of the pooled dev scores lands where the reference's threshold does.
    """
    share = float(np.mean(reference < reference_threshold))
    threshold = float(np.quantile(scores, share))
    ans, off = scores[:answerable], scores[answerable:]
    refused, abstained = float(np.mean(ans < threshold)), float(np.mean(off < threshold))
    trial = WeightTrial(weight, threshold, refused, abstained)
    return Calibration(threshold, weight, refused, abstained, [trial])
