"""Query-side mixing: the normalised form, the averaged vector, and its way into the scoring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from model_export.dictionaries import Dictionary
from model_export.evaluation import runner
from model_export.evaluation.datasets import AlignedItem, Corpus, Entry
from model_export.evaluation.encoders import ModelSpec, TextEncoder
from model_export.evaluation.queries import EvalQuery, write_eval_set
from model_export.evaluation.query_mix_cost import time_batches
from model_export.evaluation.query_mixing import QueryMix, QueryNormaliser
from model_export.evaluation.runner import EvalConfig, evaluate
from tests.fakes import FakeEncoder


def _tables() -> tuple[dict[str, Dictionary], dict[str, Dictionary]]:
    from_en = Dictionary("en", "de")
    for en, de in [("order", "Bestellung"), ("parcel", "Paket"), ("die", "sterben")]:
        from_en.add(en, de)
    to_en = Dictionary("de", "en")
    for de, en in [("bestellung", "order"), ("paket", "parcel"), ("wo", "where")]:
        to_en.add(de, en)
    return {"de": to_en}, {"de": from_en}


def test_normalised_forms_in_both_directions() -> None:
    to_en, from_en = _tables()
    target = QueryNormaliser.from_tables("target", to_en, from_en)
    # English words into German; "die" reads as German (wordfreq), so it is not "sterben".
    assert target.normalise("die order ist weg", "de") == "die Bestellung ist weg"
    assert target.normalise("wo ist mein Paket", "de") == "wo ist mein Paket"
    # English, and languages without a table, are left as they are.
    assert target.normalise("where is my order", "en") == "where is my order"
    assert target.normalise("mi order", "es") == "mi order"
    english = QueryNormaliser.from_tables("en", to_en, from_en)
    assert english.normalise("wo ist meine Bestellung", "de") == "where ist meine Order"
    assert english.languages == target.languages == ["de"]


class Recording:
    """A `TextEncoder` that remembers every query text it was asked to encode."""

    def __init__(self) -> None:
        self.inner = FakeEncoder(64, name="rec")
        self.queries: list[str] = []

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.queries.extend(texts)
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.inner.encode_passages(texts)


def test_mixed_vectors_average_the_two_rows_and_only_where_the_text_changed() -> None:
    to_en, from_en = _tables()
    normaliser = QueryNormaliser.from_tables("target", to_en, from_en)
    texts, langs = ["die order ist weg", "wo ist mein Paket"], ["de", "de"]
    enc = FakeEncoder(64)
    plain = enc.encode_queries(texts)
    second = enc.encode_queries(["die Bestellung ist weg"])[0]

    rec = Recording()
    mixed, changed = QueryMix(normaliser, 0.25).query_vectors(rec, texts, langs)
    assert changed == 1
    # one second row, for the query the normaliser changed
    assert rec.queries == [*texts, "die Bestellung ist weg"]
    expected = 0.75 * plain[0] + 0.25 * second
    np.testing.assert_allclose(mixed[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(mixed[1], plain[1], atol=1e-7)
    # weight 1: the normalised query's own vector
    only, _ = QueryMix(normaliser, 1.0).query_vectors(enc, texts, langs)
    np.testing.assert_allclose(only[0], second, atol=1e-6)
    with pytest.raises(ValueError, match="weight"):
        QueryMix(normaliser, 1.5)


def test_the_runner_mixes_each_set_by_its_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [Entry("faq:1", "where is my order", "where is my order")]
    items = [AlignedItem("faq:1", "de", "wo ist meine Bestellung", "where is my order")]
    queries = {
        ("de", "translated"): [
            EvalQuery("faq:de:translated:faq:1", items[0].text, ("faq:1",), "de", "translated")
        ],
        ("de", "cs-tgt"): [
            EvalQuery("faq:de:cs-tgt:faq:1", "wo ist meine order", ("faq:1",), "de", "cs-tgt")
        ],
    }
    write_eval_set(tmp_path, Corpus("faq", entries, items), queries)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text("{}")
    rec = Recording()

    def build(spec: ModelSpec, *, cache_dir: Path, threads: int | None = None) -> TextEncoder:
        return rec

    monkeypatch.setattr(runner, "build_encoder", build)
    to_en, from_en = _tables()
    mix = QueryMix(QueryNormaliser.from_tables("target", to_en, from_en), 0.5)
    cfg = EvalConfig(
        models=[ModelSpec("m", "onnx", path=str(tmp_path / "m"))],
        datasets=["faq"],
        eval_dir=tmp_path,
        kinds=("translated", "cs-tgt"),
    )
    results = evaluate(cfg, query_mix=mix)
    assert results.runs[0].status == "ok"
    # the cs-tgt query got its German form as a second row; the translated one had nothing
    # English in it
    assert "wo ist meine Bestellung" in rec.queries
    assert rec.queries.count("wo ist meine order") == 1
    assert len(rec.queries) == 3


def test_time_batches_times_one_row_against_two() -> None:
    # A fake model: a batch of n rows takes n + 1 ms on a fake clock.
    now = [0.0]
    batches: list[list[str]] = []

    def encode(batch: list[str]) -> None:
        batches.append(batch)
        now[0] += (len(batch) + 1) / 1000.0

    result = time_batches(encode, [("q1", "r1"), ("q2", "r2")], repeats=3, clock=lambda: now[0])
    assert result[1] == pytest.approx({"p50_ms": 2.0, "p90_ms": 2.0, "n": 6})
    assert result[2] == pytest.approx({"p50_ms": 3.0, "p90_ms": 3.0, "n": 6})
    # warm-up first, then alternating: the query alone, then with its rewrite
    assert batches[:4] == [["q1"], ["q1", "r1"], ["q2"], ["q2", "r2"]]
    assert batches[4:8] == [["q1"], ["q1", "r1"], ["q2"], ["q2", "r2"]]
