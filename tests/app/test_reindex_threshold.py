"""A reindex picks the abstain threshold for its FAQ, records it with the collection, and the
service uses the live collection's (issue 28, item 0). The model is beside the point: a
FakeEncoder the manifest describes, so the model's calibrated rule applies to it.

Its off-topic anchors share no word with the FAQ, so the threshold picked for the FAQ sits far
above the model's deliberately low one (-5: always answer): a question about the weather is
refused only if the collection's threshold is the one in force.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.services.answering import Thresholds
from index_builder.indexing.faq_calibration import anchors_hash
from index_builder.model.manifest import AbstainCalibration, ModelManifest
from index_builder.store import IndexInfo
from tests.app.conftest import serve, settings_for
from tests.app.test_admin import AUTH, KEY, NEW_ITEMS, finished, wait_for
from tests.fakes import FakeEncoder

DIM = 384
ANCHORS = [
    "what is the weather like in paris tomorrow",
    "weather forecast for berlin this weekend",
    "good morning how are you today",
    "asdf qwer zxcv",
    "who won the football match yesterday",
    "recipe for banana bread with walnuts",
    "tell me a joke about cats",
    "capital city of australia",
    "how tall is mount everest",
    "translate hello into japanese",
]
RETRIEVAL = "answer_weight=0.5 lexical_weight=0.001 prefetch=256"
MODEL_MIN_SCORE = -5.0


def _rule(weight: float = 0.5, anchors: list[str] | None = None) -> AbstainCalibration:
    anchors = ANCHORS if anchors is None else anchors
    return AbstainCalibration(
        min_score=MODEL_MIN_SCORE, offtopic_weight=weight, anchors=anchors,
        refusal_budget=0.02, answerable=1, offtopic=len(anchors), dev_refused=0.0,
        dev_abstained=1.0, faq_hash="x", retrieval=RETRIEVAL,
    )  # fmt: skip


def _model(path: Path) -> tuple[Path, FakeEncoder]:
    """A model directory whose manifest describes the returned encoder, with its rule."""
    path.mkdir(parents=True)
    manifest = ModelManifest(
        name="fake", source_model="x", dim=DIM, max_length=128, inputs=["input_ids"],
        variants={"fp32": "model.onnx"}, files={},
    ).with_calibration(_rule())  # fmt: skip
    manifest.write(path)
    encoder = FakeEncoder(dim=DIM)
    encoder._fingerprint = manifest.fingerprint("fp32")
    return path, encoder


def _serve(tmp_path: Path, **overrides: object) -> tuple[object, Path]:
    model, encoder = _model(tmp_path / "model")
    qdrant = tmp_path / "qdrant"
    values: dict[str, object] = {"admin_api_key": KEY, "jobs_dir": tmp_path / "jobs", **overrides}
    app = create_app(settings_for(model, qdrant, **values), encoder_factory=lambda s: encoder)
    return serve(app), qdrant


def _reindex(client: httpx.Client) -> dict[str, object]:
    r = client.post("/admin/reindex", json={"items": NEW_ITEMS}, headers=AUTH)
    assert r.status_code == 202, r.text
    job: dict[str, object] = wait_for(client, str(r.json()["id"]), finished)
    assert job["state"] == "succeeded", job
    # The guard remembers the "no index yet" of startup for up to a second.
    deadline = time.monotonic() + 5
    while client.get("/info").json()["index"]["collection"] != job["collection"]:
        assert time.monotonic() < deadline, "the new collection never went live"
        time.sleep(0.05)
    return job


def _search(client: httpx.Client, query: str, **body: object) -> dict[str, object]:
    r = client.post("/search", json={"query": query, "top_k": 1, **body})
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def test_a_reindex_picks_the_threshold_and_the_service_uses_it(tmp_path: Path) -> None:
    served, qdrant = _serve(tmp_path)
    with served as client:  # type: ignore[attr-defined]
        # No index yet: the model's threshold, said so.
        assert client.get("/info").json()["abstain"] == {
            "min_score": MODEL_MIN_SCORE, "source": "model", "collection": None,
        }  # fmt: skip
        job = _reindex(client)
        assert "calibrate" in job["timings"]  # type: ignore[operator]
        picked = json.loads((qdrant / "faq_v1" / "meta.json").read_text())["abstain"]
        assert picked["method"] == "reindex" and picked["chosen_by"] == "offtopic_target"
        assert picked["anchors_hash"] == anchors_hash(ANCHORS)
        assert picked["min_score"] > MODEL_MIN_SCORE
        assert client.get("/info").json()["abstain"] == {
            "min_score": picked["min_score"], "source": "collection", "collection": "faq_v1",
        }  # fmt: skip
        weather = _search(client, "what is the weather like in paris tomorrow")
        assert weather["answered"] is False
        assert weather["answer_score"] < picked["min_score"]  # type: ignore[operator]
        assert _search(client, "redeem my loyalty points")["answered"] is True
        # A request's own min_score still wins.
        assert _search(client, "what is the weather", min_score=-2)["answered"] is True


def test_the_setting_wins_and_recalibration_can_be_off(tmp_path: Path) -> None:
    served, qdrant = _serve(tmp_path / "a", min_score=-3.0)
    with served as client:  # type: ignore[attr-defined]
        _reindex(client)
        assert "abstain" in json.loads((qdrant / "faq_v1" / "meta.json").read_text())
        assert client.get("/info").json()["abstain"]["source"] == "FAQ_MIN_SCORE"
        assert _search(client, "what is the weather like in paris tomorrow")["answered"] is True
    served, qdrant = _serve(tmp_path / "b", recalibrate=False)
    with served as client:  # type: ignore[attr-defined]
        _reindex(client)
        assert "abstain" not in json.loads((qdrant / "faq_v1" / "meta.json").read_text())
        assert client.get("/info").json()["abstain"]["source"] == "model"
    # Off, a collection picked with it on serves the model's threshold too (the setting's word).
    served, qdrant = _serve(tmp_path / "c")
    with served as client:  # type: ignore[attr-defined]
        _reindex(client)
        assert client.get("/info").json()["abstain"]["source"] == "collection"
    shutil.copytree(qdrant, tmp_path / "d" / "qdrant")
    served, qdrant = _serve(tmp_path / "d", recalibrate=False)
    with served as client:  # type: ignore[attr-defined]
        assert "abstain" in json.loads((qdrant / "faq_v1" / "meta.json").read_text())
        assert client.get("/info").json()["abstain"]["source"] == "model"


def _index(abstain: dict[str, object] | None, name: str = "faq_v2") -> IndexInfo:
    return IndexInfo("faq", name, "fp", "fake", "h", 3, "2026-01-01", abstain)


def _record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "min_score": 0.42, "offtopic_weight": 0.5, "chosen_by": "offtopic_target",
        "offtopic_target": 0.9, "refusal_budget": 0.02, "positives": 10, "offtopic": 10,
        "positives_refused": 0.0, "offtopic_abstained": 0.9, "target_threshold": 0.42,
        "budget_threshold": 0.6, "model_min_score": -5.0, "anchors_hash": anchors_hash(ANCHORS),
        "retrieval": RETRIEVAL,
    }  # fmt: skip
    return {**record, **changes}


def test_a_collections_threshold_only_with_the_rule_it_was_picked_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    thresholds = Thresholds(_rule(), retrieval=RETRIEVAL)
    assert thresholds.for_index(_index(_record())).min_score == 0.42
    assert thresholds.for_index(None).source == "model"
    assert thresholds.for_index(_index(None, "faq_v9")).source == "model"
    for i, stale in enumerate(
        [
            _record(offtopic_weight=0.25),
            _record(anchors_hash="0" * 16),
            _record(retrieval="answer_weight=0 lexical_weight=0 prefetch=256"),
            {"min_score": "unreadable"},
        ]
    ):
        picked = thresholds.for_index(_index(stale, f"faq_v{i + 3}"))
        assert (picked.min_score, picked.source) == (MODEL_MIN_SCORE, "model"), stale
    assert caplog.text.count("the model's serves") == 3
    assert Thresholds(None).for_index(_index(_record())).source == "none"
    off = Thresholds(_rule(), retrieval=RETRIEVAL, use_collection=False)
    assert off.for_index(_index(_record())).source == "model"
