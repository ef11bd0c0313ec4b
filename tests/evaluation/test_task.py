"""Evaluation on the shop task: topic-level scoring, grouping, reports, CLI, and a real HTTP run."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from index_builder.faq import read_faq
from model_export.cli import cli
from model_export.evaluation import encoders, runner, task
from model_export.evaluation.datasets import AlignedItem, Corpus, Entry
from model_export.evaluation.encoders import DenseRetriever, ModelSpec, Retriever
from model_export.evaluation.queries import EvalQuery, write_eval_set
from model_export.shopper_data import DEFAULT_FAQ, faq_topics
from tests.evaluation.fixtures import SearchStandIn, serving
from tests.fakes import FakeEncoder

# Three topics, two of them translated: the dedup cases need a topic with two entries.
FAQ = [
    ("order-cancel", "How do I cancel my order", "en"),
    ("order-cancel.es", "Cómo cancelo mi pedido", "es"),
    ("order-track", "Where is my parcel", "en"),
    ("order-track.es", "Dónde está mi paquete", "es"),
    ("return-how", "How do I return an item", "en"),
]
# query, gold topic, lang, kind; and the entry ranking a scripted model returns for it.
QUERIES: list[tuple[str, str, str, str, list[str]]] = [
    # rank 1 although a translation of the gold topic comes first
    ("cancel my order", "order-cancel", "en", "english", ["order-cancel.es", "order-cancel"]),
    # entries 1-2 are one topic: order-track is topic 3 (entry 4)
    (
        "where is my parcel",
        "order-track",
        "en",
        "english",
        ["order-cancel", "order-cancel.es", "return-how", "order-track"],
    ),
    (
        "cómo cancelo pedido",
        "order-cancel",
        "es",
        "monolingual",
        ["order-track.es", "order-cancel"],
    ),
    ("dónde está paquete", "order-track", "es", "monolingual", ["order-track.es", "order-track"]),
    # topic 3 at entry 5
    (
        "cómo hago return an item",
        "return-how",
        "es",
        "code_mixed",
        ["order-cancel", "order-cancel.es", "order-track.es", "order-track", "return-how"],
    ),
    # topic 3 at entry 4
    (
        "kaise cancel my order",
        "order-cancel",
        "hi",
        "code_mixed",
        ["return-how", "order-track", "order-track.es", "order-cancel"],
    ),
]
# By hand, topic ranks 1, 3, 2, 1, 3, 3.
EXPECTED = {"R@1": 2 / 6, "R@3": 6 / 6, "MRR@10": (1 + 1 / 3 + 1 / 2 + 1 + 1 / 3 + 1 / 3) / 6}
SCRIPT = {q[0]: q[4] for q in QUERIES}


def _write_faq(path: Path) -> Path:
    rows = [
        {"id": i, "question": q, "answer": f"answer to {q}", "lang": lang} for i, q, lang in FAQ
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def _write_queries(path: Path, rows: Sequence[tuple[Any, ...]] = QUERIES) -> Path:
    lines = [
        json.dumps({"query": q, "faq_id": t, "lang": lang, "kind": k}, ensure_ascii=False)
        for q, t, lang, k, *_ in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "faq": _write_faq(tmp_path / "faq.jsonl"),
        "queries": _write_queries(tmp_path / "test.jsonl"),
    }
    for name in ("wide", "narrow", "scripted"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
        out[name] = tmp_path / name
    return out


class Scripted:
    """A retriever returning fixed entry rankings (the rest of the entries after them)."""

    def rank(
        self, queries: Sequence[str], entries: Sequence[tuple[str, str]], k: int
    ) -> list[list[str]]:
        ids = [e[0] for e in entries]
        out = []
        for q in queries:
            head = SCRIPT[q]
            out.append((head + [i for i in ids if i not in head])[:k])
        return out


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX directories named wide/narrow/scripted become fake models; http stays real."""
    real = encoders.build_retriever

    def build(spec: ModelSpec, *, cache_dir: Path, threads: int | None = None) -> Retriever:
        if spec.kind == "http":
            return real(spec, cache_dir=cache_dir, threads=threads)
        kind = Path(spec.path).name
        if kind == "scripted":
            return Scripted()
        # bag of words: 256 dims separate the toy questions, 2 dims mostly cannot
        return DenseRetriever(FakeEncoder(256 if kind == "wide" else 2, name=kind))

    monkeypatch.setattr(encoders, "build_retriever", build)
    monkeypatch.setattr(runner, "build_retriever", build)


def _invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, ["eval", *map(str, args)])


def _rows(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["model"], r["lang"], r["kind"]): r for r in report["results"]}


# --- topics and metrics ---------------------------------------------------------------------


def test_topic_of_agrees_with_the_query_validation() -> None:
    # load_queries validates faq_id against shopper_data.faq_topics: the two must not drift.
    assert topic_of_all(DEFAULT_FAQ) == faq_topics(DEFAULT_FAQ)
    assert task.topic_of("order-cancel.es") == "order-cancel" == task.topic_of("order-cancel")


def topic_of_all(path: Path) -> frozenset[str]:
    return frozenset(task.topic_of(i.id) for i in read_faq(path))


def test_translations_count_once() -> None:
    ranking = ["order-cancel.es", "order-cancel", "order-track.es", "order-track", "return-how"]
    assert task.topic_ranking(ranking) == ["order-cancel", "order-track", "return-how"]
    assert task.topic_ranking(ranking, k=2) == ["order-cancel", "order-track"]


def test_scripted_rankings_by_hand(files: dict[str, Path]) -> None:
    data = task.load_task(files["faq"], files["queries"])
    per_query, ranks, fewest = task.score_rankings([q[4] for q in QUERIES], data.queries)
    assert ranks == [1, 3, 2, 1, 3, 3]
    assert fewest == 1  # the first query's script names one topic only
    for metric, value in EXPECTED.items():
        assert per_query[metric].mean() == pytest.approx(value), metric


def test_groups_per_language_and_kind(files: dict[str, Path], fake_models: None) -> None:
    data = task.load_task(files["faq"], files["queries"])
    source = task.ModelSource("s", "onnx", str(files["scripted"]))
    run = task.run_task(data, [source], n_boot=50)
    rows = _rows(task.to_json(run))
    n = {key[1:]: r["n"] for key, r in rows.items()}
    assert n[("all", "all")] == 6
    assert n[("en", "english")] == n[("en", "all")] == n[("all", "english")] == 2
    assert n[("es", "all")] == 3 and n[("hi", "code_mixed")] == 1
    assert n[("all", "code_mixed")] == 2 and n[("all", "monolingual")] == 2
    assert ("hi", "monolingual") not in n
    mono = rows[("s", "es", "monolingual")]["metrics"]
    assert mono["R@1"]["mean"] == pytest.approx(0.5)
    assert mono["MRR@10"]["mean"] == pytest.approx(0.75)
    everything = rows[("s", "all", "all")]["metrics"]
    for metric, value in EXPECTED.items():
        assert everything[metric]["mean"] == pytest.approx(value)
        assert everything[metric]["ci_low"] <= value <= everything[metric]["ci_high"]
    assert rows[("s", "all", "code_mixed")]["metrics"]["R@1"]["mean"] == 0.0


# --- the CLI --------------------------------------------------------------------------------


def test_cli_task_form_reports_and_summary(
    files: dict[str, Path], fake_models: None, tmp_path: Path
) -> None:
    out, summary_path = tmp_path / "out", tmp_path / "docs" / "summary.json"
    result = _invoke(
        "--faq", files["faq"], "--queries", files["queries"],
        "--model", f"base={files['narrow']}", "--model", f"shop={files['wide']}",
        "--compare", "base:shop", "--out", out, "--summary", summary_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert list(report["models"]) == ["base", "shop"]
    assert report["ranks"]["shop"][0] == 1  # the wide fake finds an exact-word query
    comps = {(c["lang"], c["kind"], c["metric"]): c for c in report["comparisons"]}
    delta = comps[("all", "all", "R@1")]["delta"]
    rows = _rows(report)
    r1 = {m: rows[(m, "all", "all")]["metrics"]["R@1"]["mean"] for m in ("base", "shop")}
    assert delta == pytest.approx(r1["shop"] - r1["base"])
    md = (out / "results.md").read_text()
    assert "| shop |" in md and "| base | shop | all | R@1 |" in md and "| en | es | hi |" in md
    assert md in result.output

    summary = json.loads(summary_path.read_text())
    assert set(summary) >= {"shopper_test", "controls"}
    assert set(summary["shopper_test"]) == {"base", "shop"}
    assert set(summary["controls"]) == {"debian_en", "oscar_en"}
    for entry in summary["shopper_test"].values():
        assert entry["n"] == 6
        assert set(entry["by_lang"]) == {"en", "es", "hi"}
        assert set(entry["by_kind"]) == {"monolingual", "code_mixed", "english"}
        cells = [entry, *entry["by_lang"].values(), *entry["by_kind"].values()]
        for cell in cells:
            assert 0.0 <= cell["r1"] <= cell["r3"] <= 1.0
    assert summary["shopper_test"]["shop"]["r1"] == pytest.approx(r1["shop"])


def _write_control_sets(root: Path) -> None:
    for name in task.CONTROL_SETS.values():
        entries = [Entry(f"{name}-{i}", q, q) for i, q in enumerate(["open the pod", "a b c"])]
        english = [
            EvalQuery(f"{name}:en:english:{e.id}", e.question, (e.id,), "en", "english")
            for e in entries
        ]
        items = [AlignedItem(e.id, "de", e.text, e.question) for e in entries]
        write_eval_set(root, Corpus(name, entries, items), {("en", "english"): english})


def test_cli_controls_score_each_model_on_the_english_sets(
    files: dict[str, Path], fake_models: None, tmp_path: Path
) -> None:
    _write_control_sets(tmp_path / "eval")
    summary_path = tmp_path / "summary.json"
    result = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], "--model", f"shop={files['wide']}",
        "--out", tmp_path / "out", "--summary", summary_path, "--controls", tmp_path / "eval",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    controls = json.loads(summary_path.read_text())["controls"]
    assert controls["debian_en"]["shop"]["r1"] == 1.0 == controls["oscar_en"]["shop"]["r1"]
    assert controls["debian_en"]["shop"]["n"] == 2
    bad = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], "--model", f"shop={files['wide']}",
        "--controls", tmp_path / "nowhere",
    )  # fmt: skip
    assert bad.exit_code == 2 and "eval-data" in bad.stderr


def _first_of(ranks: Sequence[int], queries: Sequence[tuple[Any, ...]], kind: str) -> list[float]:
    return [float(r == 1) for r, q in zip(ranks, queries, strict=True) if q[3] == kind]


def test_cli_codeswitch_object_pools_the_hard_faq(
    files: dict[str, Path], fake_models: None, tmp_path: Path
) -> None:
    hard = tmp_path / "hard"
    hard.mkdir()
    _write_faq(hard / "faq.jsonl")
    hard_rows = QUERIES[2:]  # two monolingual, two code-mixed (one Hindi in Latin letters)
    _write_queries(hard / "test.jsonl", hard_rows)
    out, summary_path = tmp_path / "out", tmp_path / "summary.json"
    models = [
        "--model", f"base={files['narrow']}", "--model", f"shop={files['wide']}",
        "--model", f"shop_no_cs={files['scripted']}",
    ]  # fmt: skip
    result = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], *models,
        "--hard-faq", hard, "--out", out, "--summary", summary_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    cs = json.loads(summary_path.read_text())["codeswitch"]
    assert cs == report["codeswitch"]
    assert cs["meta"]["faqs"] == ["shopper", "hard_faq"] and cs["meta"]["code_mixed_n"] == 4
    # the pooled delta from the per-query ranks of both FAQs, each model's own
    pooled = {
        m: _first_of(report["ranks"][m], QUERIES, "code_mixed")
        + _first_of(report["hard_faq"]["ranks"][m], hard_rows, "code_mixed")
        for m in ("shop", "shop_no_cs")
    }
    assert cs["code_mixed_delta_r1"] == pytest.approx(
        sum(pooled["shop"]) / 4 - sum(pooled["shop_no_cs"]) / 4
    )
    assert cs["hard_faq"]["n"] == 4
    assert cs["hard_faq"]["shop_no_cs"] == pytest.approx(
        sum(r == 1 for r in report["hard_faq"]["ranks"]["shop_no_cs"]) / 4
    )
    # "kaise cancel my order" (hi) in both files: Hindi in Latin letters
    assert cs["romanised"]["n"] == 2
    # no --controls: no penalty, no English controls
    assert cs["penalty"] == {"base": None, "shop": None, "shop_no_cs": None}
    assert cs["english_controls"] == {"base": None, "shop": None}

    without = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], *models,
        "--out", out, "--summary", summary_path,
    )  # fmt: skip
    assert without.exit_code == 0, without.output
    cs = json.loads(summary_path.read_text())["codeswitch"]
    assert cs["hard_faq"] == {"n": None, "base": None, "shop": None, "shop_no_cs": None}
    assert cs["meta"]["faqs"] == ["shopper"] and cs["meta"]["code_mixed_n"] == 2
    missing = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], *models,
        "--hard-faq", tmp_path / "nowhere", "--out", out,
    )  # fmt: skip
    assert missing.exit_code == 2 and "--hard-faq" in missing.stderr


def test_cli_query_mix_encodes_each_query_with_its_normalised_form(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    muse = tmp_path / "en-es.txt"
    muse.write_text("order pedido\ncancel cancelo\n", encoding="utf-8")
    lexicons = tmp_path / "run.toml"
    lexicons.write_text(
        f'[codeswitch]\nlanguages = ["es"]\n[codeswitch.dictionaries.es]\nfrom_en = ["{muse}"]\n',
        encoding="utf-8",
    )
    seen: list[str] = []

    class Recording(FakeEncoder):
        def encode_queries(self, texts: Sequence[str]) -> Any:
            seen.extend(texts)
            return super().encode_queries(texts)

    def build(spec: ModelSpec, *, cache_dir: Path, threads: int | None = None) -> Any:
        return Recording(256)

    monkeypatch.setattr(encoders, "build_encoder", build)
    args = [
        "--faq",
        files["faq"],
        "--queries",
        files["queries"],
        "--model",
        f"shop={files['wide']}",
    ]
    mix = ["--query-mix", "0.5", "--query-mix-direction", "en", "--query-mix-lexicons", lexicons]
    result = _invoke(*args, *mix, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["query_mix"] == {
        "weight": 0.5, "direction": "en", "lexicons": str(lexicons), "languages": ["es"],
    }  # fmt: skip
    # every query once, then the second rows: the Spanish queries the lexicon changed
    assert seen[: len(QUERIES)] == [q[0] for q in QUERIES]
    assert seen[len(QUERIES) :] == ["cómo cancel order"]
    misspelt = tmp_path / "misspelt.toml"
    misspelt.write_text('name = "x"\n[codeswitch]\nlangs = ["es"]\n', encoding="utf-8")
    for bad, why in [
        (["--query-mix", "1.5"], "[0, 1]"),
        (["--query-mix", "0.5", "--query-mix-direction", "sideways"], "one of target, en"),
        (["--query-mix-direction", "en"], "need --query-mix"),
        (["--query-mix", "0.5", "--query-mix-lexicons", tmp_path / "no.toml"], "not found"),
        (["--query-mix", "0.5", "--query-mix-lexicons", misspelt], "unknown settings ['langs']"),
    ]:
        failed = _invoke(*args, *bad, "--out", tmp_path / "out2")
        assert failed.exit_code == 2 and why in failed.stderr, failed.stderr


def _bad_line(path: Path) -> Path:
    text = path.read_text().splitlines()
    text.insert(1, "{not json")
    path.write_text("\n".join(text) + "\n")
    return path


def _unknown_topic(path: Path) -> Path:
    _write_queries(path, [*QUERIES[:2], ("where is it", "order-nope", "en", "english")])
    # a blank line before it: the reported line is the file's, not the query's index
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], "", lines[2]]) + "\n")
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad_json", "test.jsonl:2: bad JSON"),
        ("unknown_topic", "test.jsonl:4: faq_id 'order-nope' is not a topic of"),
        ("missing_queries", "nope.jsonl: file not found"),
        ("missing_faq", "nope.faq.jsonl: file not found"),
        ("missing_base", "manifest.json not found; build it with `make model`"),
        ("missing_trained", "model 'shop': "),
        ("mixed_forms", "--config (table form) and --faq, --queries, --model (task form)"),
        ("bad_compare", "--compare 'base:zzz'"),
        ("no_model", "at least one --model"),
        ("duplicate_name", "used twice: wide"),
    ],
)
def test_cli_input_errors_exit_2_without_traceback(
    case: str, expected: str, files: dict[str, Path], fake_models: None, tmp_path: Path
) -> None:
    faq, queries, model = files["faq"], files["queries"], f"base={files['wide']}"
    extra: list[str | Path] = []
    if case == "bad_json":
        _bad_line(queries)
    elif case == "unknown_topic":
        _unknown_topic(queries)
    elif case == "missing_queries":
        queries = tmp_path / "nope.jsonl"
    elif case == "missing_faq":
        faq = tmp_path / "nope.faq.jsonl"
    elif case == "missing_base":
        model = f"base={tmp_path / 'absent'}"
    elif case == "missing_trained":
        model = f"shop={tmp_path / 'absent'}"
        expected += f"{tmp_path / 'absent' / 'manifest.json'} not found; build it with `make train`"
    elif case == "mixed_forms":
        extra = ["--config", "configs/eval/table.toml"]
    elif case == "bad_compare":
        extra = ["--compare", "base:zzz"]
    elif case == "duplicate_name":
        extra = ["--model", str(files["wide"]), "--model", str(files["wide"])]
        model = f"other={files['narrow']}"
    args: list[str | Path] = ["--faq", faq, "--queries", queries]
    if case != "no_model":
        args += ["--model", model]
    result = _invoke(*args, *extra, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


class _Stop(Exception):
    pass


def test_config_form_still_runs_the_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[runner.EvalConfig] = []

    def evaluate(cfg: runner.EvalConfig) -> runner.EvalResults:
        seen.append(cfg)
        raise _Stop

    monkeypatch.setattr(runner, "evaluate", evaluate)
    config = tmp_path / "table.toml"
    config.write_text('datasets = ["oscar"]\n[[models]]\nname = "m"\npath = "x"\n')
    result = _invoke("--config", config, "--max-queries", "3")
    assert isinstance(result.exception, _Stop)
    assert [m.name for m in seen[0].models] == ["m"] and seen[0].max_queries == 3
    # no option at all is still the table form, with its default config
    assert isinstance(_invoke().exception, _Stop)
    assert [m.name for m in seen[1].models] == [
        m.name for m in runner.EvalConfig.read(Path("configs/eval/table.toml")).models
    ]
    missing = _invoke("--config", tmp_path / "nope.toml")
    assert missing.exit_code == 2 and "nope.toml: file not found" in missing.stderr


# --- a running service over HTTP ------------------------------------------------------------


class _Service(SearchStandIn):
    """`POST /search` in the API's response shape, answering from SCRIPT (or foreign ids)."""

    top_ks: ClassVar[list[int]] = []
    foreign: ClassVar[bool] = False
    envelope: ClassVar[dict[str, object]] = {
        "model": "m",
        "index": "faq_1",
        "took_ms": 1.0,
        "truncated": False,
    }

    def hits(self, body: dict[str, Any]) -> list[dict[str, object]]:
        assert self.path == "/search"
        self.top_ks.append(body["top_k"])
        ids = ["other-faq.de"] if self.foreign else SCRIPT[body["query"]][: body["top_k"]]
        return [
            {"id": i, "question": "q", "answer": "a", "score": 1.0 - n / 100, "lang": "en"}
            for n, i in enumerate(ids)
        ]


@pytest.fixture
def service() -> Iterator[str]:
    _Service.top_ks, _Service.foreign = [], False
    with serving(_Service) as url:
        yield url


def test_url_scores_the_service_like_a_local_model(
    files: dict[str, Path], fake_models: None, service: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], "--url", f"svc={service}",
        "--model", f"local={files['scripted']}", "--compare", "local:svc", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _Service.top_ks == [50] * len(QUERIES)  # the API's maximum
    report = json.loads((out / "results.json").read_text())
    rows = _rows(report)
    for metric, value in EXPECTED.items():
        assert rows[("svc", "all", "all")]["metrics"][metric]["mean"] == pytest.approx(value)
    assert report["ranks"]["svc"] == report["ranks"]["local"] == [1, 3, 2, 1, 3, 3]
    assert report["models"]["svc"]["kind"] == "http"
    # an unnamed URL is named after host:port, and compare still splits at the right colon
    host = service.split("//", 1)[1]
    unnamed = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], "--url", service,
        "--model", f"local={files['scripted']}", "--compare", f"local:{host}", "--out", out,
    )  # fmt: skip
    assert unnamed.exit_code == 0, unnamed.output
    assert host in json.loads((out / "results.json").read_text())["models"]


def test_url_of_a_service_indexing_another_faq_is_refused(
    files: dict[str, Path], service: str
) -> None:
    _Service.foreign = True
    result = _invoke("--faq", files["faq"], "--queries", files["queries"], "--url", service)
    assert result.exit_code == 2 and "other-faq.de" in result.stderr, result.output
    down = _invoke(
        "--faq", files["faq"], "--queries", files["queries"], "--url", "http://127.0.0.1:9"
    )
    assert down.exit_code == 2 and down.stderr.startswith("error: model '127.0.0.1:9'")
