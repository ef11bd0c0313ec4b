"""The evaluation loop and reports end to end with a deterministic fake encoder, and HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from model_export.evaluation import runner
from model_export.evaluation.datasets import AlignedItem, Corpus, Entry
from model_export.evaluation.encoders import (
    CachedEncoder,
    DenseRetriever,
    HttpRetriever,
    ModelSpec,
    Retriever,
)
from model_export.evaluation.queries import EvalQuery, write_eval_set
from model_export.evaluation.report import to_json, to_markdown, write_reports
from model_export.evaluation.runner import EvalConfig, evaluate
from tests.evaluation.fixtures import SearchStandIn, serving
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]

ENTRIES = [
    Entry("e1", "cancel my order", "cancel my order"),
    Entry("e2", "track my parcel", "track my parcel"),
    Entry("e3", "change shipping address", "change shipping address"),
]


def _write_set(root: Path) -> None:
    corpus = Corpus("toy", ENTRIES, [AlignedItem(e.id, "es", e.text, e.question) for e in ENTRIES])
    q = {
        ("en", "english"): [
            EvalQuery(f"toy:en:english:{e.id}", e.question, (e.id,), "en", "english")
            for e in ENTRIES
        ],
        ("es", "translated"): [
            EvalQuery("toy:es:translated:e1", "cancelar mi pedido", ("e1",), "es", "translated"),
            EvalQuery("toy:es:translated:e2", "rastrear mi paquete", ("e2",), "es", "translated"),
        ],
        ("es", "cs-tgt"): [
            EvalQuery("toy:es:cs-tgt:e1", "cancelar my order", ("e1",), "es", "cs-tgt"),
            EvalQuery("toy:es:cs-tgt:e2", "rastrear my parcel", ("e2",), "es", "cs-tgt"),
            EvalQuery("toy:es:cs-tgt:e3", "cambiar shipping address", ("e3",), "es", "cs-tgt"),
        ],
    }
    write_eval_set(root, corpus, q)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, CachedEncoder]:
    """Two fake 'models' (different hash dimensions) in place of ONNX directories."""
    encoders: dict[str, CachedEncoder] = {}

    def build(spec: ModelSpec, *, cache_dir: Path, threads: int | None = None) -> Retriever:
        dim = 256 if spec.name == "wide" else 4
        enc = CachedEncoder(FakeEncoder(dim, name=spec.name), cache_dir)
        encoders[spec.name] = enc
        return DenseRetriever(enc)

    monkeypatch.setattr(runner, "build_retriever", build)
    for name in ("wide", "narrow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    return encoders


def _config(tmp_path: Path) -> EvalConfig:
    cfg = EvalConfig.from_dict(
        {
            "datasets": ["toy"],
            "eval_dir": str(tmp_path / "eval"),
            "n_boot": 200,
            "models": [
                {"name": "wide", "kind": "onnx", "path": str(tmp_path / "wide")},
                {"name": "narrow", "kind": "onnx", "path": str(tmp_path / "narrow")},
                {"name": "absent", "kind": "onnx", "path": str(tmp_path / "absent")},
            ],
            "compare": [{"a": "narrow", "b": "wide"}],
        }
    )
    cfg.cache_dir = tmp_path / "cache"
    return cfg


def test_evaluate_and_report(tmp_path: Path, fake_models: dict[str, CachedEncoder]) -> None:
    _write_set(tmp_path / "eval")
    results = evaluate(_config(tmp_path))
    assert results.run("absent").status.startswith("not available")
    wide = results.run("wide")
    # bag-of-words fake encoder: English queries are identical to their entries
    assert list(wide.per_query[("toy", "en", "english")]["R@1"]) == [1.0, 1.0, 1.0]
    assert wide.ranks[("toy", "en", "english")] == [1, 1, 1]
    # fully Spanish queries share no word with the entries; cs queries share two or three
    assert wide.per_query[("toy", "es", "cs-tgt")]["R@1"].mean() == 1.0
    report = to_json(results)
    rows = {(r["model"], r["dataset"], r["kind"], r["lang"]): r for r in report["results"]}
    assert rows[("wide", "toy", "cs-tgt", "all")]["n"] == 3
    assert rows[("wide", "all", "code-switched", "all")]["n"] == 3
    assert rows[("wide", "toy", "english", "all")]["metrics"]["R@1"]["mean"] == 1.0
    comps = [c for c in report["comparisons"] if c["group"] == "english" and c["metric"] == "R@1"]
    assert comps and comps[0]["n"] == 3.0
    # the penalty pairs e1 and e2; e3 has a cs-tgt query but no translated one
    pen = {(p["model"], p["dataset"], p["lang"]): p for p in report["penalties"]}
    assert pen[("wide", "toy", "es")]["n"] == 2
    assert pen[("wide", "toy", "es")]["cs_tgt"] == 1.0
    assert {c["lang"] for c in report["penalty_comparisons"]} == {"es", "all"}
    md = to_markdown(report)
    assert "| wide |" in md and "| narrow |" in md and "absent (not available" in md
    paths = write_reports(results, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["eval_sets"]["toy"] == results.sets["toy"].checksum
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_embeddings_are_cached(tmp_path: Path, fake_models: dict[str, CachedEncoder]) -> None:
    _write_set(tmp_path / "eval")
    evaluate(_config(tmp_path))
    first = fake_models["wide"].misses
    assert first > 0
    evaluate(_config(tmp_path))
    assert fake_models["wide"].misses == 0 and fake_models["wide"].hits >= first


def test_config_rejects_unknown_comparison() -> None:
    with pytest.raises(ValueError, match="not a model"):
        EvalConfig.from_dict(
            {"models": [{"name": "a", "path": "x"}], "compare": [{"a": "a", "b": "z"}]}
        )


def test_config_rejects_a_misspelt_setting_and_no_models() -> None:
    with pytest.raises(ValueError, match=r"unknown settings \['n_bot'\]"):
        EvalConfig.from_dict({"models": [{"name": "a", "path": "x"}], "n_bot": 10})
    with pytest.raises(ValueError, match="no \\[\\[models\\]\\]"):
        EvalConfig.from_dict({"datasets": ["oscar"]})


def test_every_shipped_config_loads() -> None:
    """The table's configs as `faq-model eval --config` reads them; the training configs under
    configs/ (those of the evaluation's smoke runs included) as `faq-model train` does."""
    from model_export.training.config import load_config

    configs = REPO / "configs"
    tables = sorted((configs / "eval").glob("*.toml"))
    assert tables and all(EvalConfig.read(p).models for p in tables)
    runs = sorted((configs / "train").glob("*.toml")) + sorted(configs.glob("eval/train/*.toml"))
    assert {load_config(p).name for p in runs} == {p.stem for p in runs}


class _Search(SearchStandIn):
    answers: ClassVar[dict[str, list[str]]] = {}

    def hits(self, body: dict[str, Any]) -> list[dict[str, object]]:
        return [{"id": i, "score": 1.0} for i in self.answers[body["query"]][: body["top_k"]]]


@pytest.fixture
def service() -> Iterator[str]:
    with serving(_Search) as url:
        yield url


def test_http_retriever_ranks_by_the_service(service: str) -> None:
    _Search.answers = {"q1": ["e2", "e1"], "q2": ["e3"], "q3": ["zzz"]}
    entries = [(e.id, e.text) for e in ENTRIES]
    retriever = HttpRetriever(service)
    assert retriever.rank(["q1", "q2"], entries, 30) == [["e2", "e1"], ["e3"]]
    with pytest.raises(ValueError, match="index the dataset"):
        retriever.rank(["q3"], entries, 30)
