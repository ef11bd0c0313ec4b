"""The code-switching penalty and the per-direction tables, with retrievers scripted per query.

The toy set has translated queries for entries that have no cs-tgt query (`toy:e3`, `toy:e4`)
and every scripted model gets those wrong: a penalty computed over all translated queries
instead of the paired ones would come out lower than the values asserted here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from model_export.evaluation import runner
from model_export.evaluation.datasets import AlignedItem, Corpus, Entry
from model_export.evaluation.encoders import ModelSpec, Retriever
from model_export.evaluation.metrics import bootstrap_ci
from model_export.evaluation.queries import EvalQuery, write_eval_set
from model_export.evaluation.report import to_json, to_markdown
from model_export.evaluation.runner import EvalConfig, EvalResults, entry_of, evaluate

# Entry ids with a colon, as oscar's are: the query id must still give them back whole.
ENTRIES = [Entry(f"toy:e{i}", f"answer {i}", f"question {i}") for i in range(1, 5)]
# (lang, kind) -> the entries that have such a query, in file order. Unpaired entries come
# first, so pairing by position instead of by entry id would give other numbers.
SETS: dict[tuple[str, str], list[str]] = {
    ("en", "english"): ["toy:e1", "toy:e2", "toy:e3", "toy:e4"],
    ("es", "translated"): ["toy:e3", "toy:e1", "toy:e4", "toy:e2"],
    ("es", "cs-tgt"): ["toy:e1", "toy:e2"],
    ("es", "cs-en"): ["toy:e1", "toy:e2"],
    ("de", "translated"): ["toy:e3", "toy:e1", "toy:e2"],
    ("de", "cs-tgt"): ["toy:e1", "toy:e2"],
    ("de", "cs-en"): ["toy:e1"],
}
PAIRED = {"toy:e1", "toy:e2"}  # the entries with both a translated and a cs-tgt query


def _text(lang: str, kind: str, entry: str) -> str:
    return f"{kind} {lang} {entry}"


def _write_set(root: Path) -> None:
    items = [AlignedItem(e.id, lang, "x", e.question) for e in ENTRIES for lang in ("es", "de")]
    queries = {
        (lang, kind): [
            EvalQuery(f"toy:{lang}:{kind}:{e}", _text(lang, kind, e), (e,), lang, kind)
            for e in entries
        ]
        for (lang, kind), entries in SETS.items()
    }
    write_eval_set(root, Corpus("toy", ENTRIES, items), queries)


def _right(model: str, lang: str, kind: str, entry: str) -> bool:
    """Whether the scripted `model` ranks the gold entry first for this query."""
    if kind == "english":
        return True
    if kind == "translated":
        # unpaired translated queries are always missed (see the module docstring)
        if entry not in PAIRED:
            return False
        return not (model == "mixed" and (lang, entry) == ("de", "toy:e1"))
    if model == "translated-only":  # every code-switched query missed
        return False
    if model == "mixed":
        return (lang, entry) in {("es", "toy:e2"), ("de", "toy:e1")}
    return True  # "both-right"


class ScriptedRetriever:
    """Ranks one fixed entry first per query text: the gold one or, if wrong, another."""

    def __init__(self, first: Mapping[str, str]) -> None:
        self.first = first

    def rank(
        self, queries: Sequence[str], entries: Sequence[tuple[str, str]], k: int
    ) -> list[list[str]]:
        ids = [e[0] for e in entries]
        return [[self.first[q]] + [i for i in ids if i != self.first[q]] for q in queries]


def _script(model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for (lang, kind), entries in SETS.items():
        for e in entries:
            wrong = next(x.id for x in ENTRIES if x.id != e)
            out[_text(lang, kind, e)] = e if _right(model, lang, kind, e) else wrong
    return out


MODELS = ("translated-only", "both-right", "mixed")


@pytest.fixture
def results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> EvalResults:
    def build(spec: ModelSpec, *, cache_dir: Path, threads: int | None = None) -> Retriever:
        return ScriptedRetriever(_script(spec.name))

    monkeypatch.setattr(runner, "build_retriever", build)
    for name in MODELS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    _write_set(tmp_path / "eval")
    cfg = EvalConfig.from_dict(
        {
            "datasets": ["toy"],
            "eval_dir": str(tmp_path / "eval"),
            "n_boot": 300,
            "models": [{"name": m, "kind": "onnx", "path": str(tmp_path / m)} for m in MODELS],
            "compare": [{"a": "translated-only", "b": "both-right"}],
        }
    )
    cfg.cache_dir = tmp_path / "cache"
    return evaluate(cfg)


def _penalties(res: EvalResults) -> dict[tuple[str, str, str], dict[str, float]]:
    return {(p["model"], p["dataset"], p["lang"]): p for p in res.penalties()}


def test_penalty_is_one_when_only_translated_queries_are_right(results: EvalResults) -> None:
    pen = _penalties(results)
    for ds in ("toy", "all"):
        for lang in ("es", "de", "all"):
            row = pen[("translated-only", ds, lang)]
            assert row["mean"] == 1.0
            assert (row["ci_low"], row["ci_high"]) == (1.0, 1.0)
            assert row["translated"] == 1.0 and row["cs_tgt"] == 0.0
    assert pen[("translated-only", "toy", "all")]["n"] == 4  # two paired entries per language


def test_penalty_is_zero_when_both_are_right(results: EvalResults) -> None:
    pen = _penalties(results)
    for lang in ("es", "de", "all"):
        row = pen[("both-right", "toy", lang)]
        assert row["mean"] == 0.0 and (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
        assert row["n"] == 2 * (lang == "all") + 2


def test_translated_queries_without_cs_tgt_are_left_out(results: EvalResults) -> None:
    """Over all translated queries es would read 0.5 - 0 and de 2/3 - 0, not 1.0."""
    keys, tr, cs = results.penalty_pairs("translated-only", "toy", "all")
    assert {entry for _, _, entry in keys} == PAIRED
    assert len(keys) == tr.size == cs.size == 4
    pooled = results.pooled("translated-only", "toy", ("translated",))["R@1"]
    assert pooled.size == 7 and pooled.mean() < 1.0  # the unpaired ones do exist


def test_interval_resamples_per_entry_differences(results: EvalResults) -> None:
    row = _penalties(results)[("mixed", "toy", "all")]
    _, tr, cs = results.penalty_pairs("mixed", "toy", "all")
    # de: e1 (0 - 1), e2 (1 - 0); es: e1 (1 - 0), e2 (1 - 1)
    assert list(tr - cs) == [-1.0, 1.0, 1.0, 0.0]
    assert row["mean"] == pytest.approx(0.25)
    expected = bootstrap_ci(tr - cs, n_boot=300, seed=0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_penalty_difference_between_models(results: EvalResults) -> None:
    comps = {(c["dataset"], c["lang"]): c for c in results.penalty_comparisons()}
    assert set(comps) == {(ds, lang) for ds in ("toy", "all") for lang in ("es", "de", "all")}
    c = comps[("toy", "all")]
    assert (c["a"], c["b"]) == ("translated-only", "both-right")
    assert c["penalty_a"] == 1.0 and c["penalty_b"] == 0.0
    assert c["delta"] == -1.0 and (c["ci_low"], c["ci_high"]) == (-1.0, -1.0)
    assert c["n"] == 4


def test_json_has_penalty_rows(results: EvalResults) -> None:
    report = to_json(results)
    row = next(p for p in report["penalties"] if p["model"] == "mixed" and p["lang"] == "es")
    assert {"model", "dataset", "lang", "n", "mean", "ci_low", "ci_high"} <= set(row)
    assert (row["dataset"], row["n"], row["mean"]) == ("toy", 2, 0.5)
    assert report["penalty_comparisons"]


def _table_after(md: str, heading: str) -> list[str]:
    """The table lines that follow the paragraph starting with `heading`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    table: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def test_markdown_penalty_tables(results: EvalResults) -> None:
    md = to_markdown(to_json(results))
    assert "**toy**, code-switching penalty per language" in md
    assert "**all datasets**, code-switching penalty per language" in md
    one = "+100.0 [+100.0, +100.0]"
    zero = "+0.0 [+0.0, +0.0]"
    for heading in ("**toy**, code-switching", "**all datasets**, code-switching"):
        table = _table_after(md, heading)
        assert table[0] == "| model | de | es | all | n |"
        assert f"| translated-only | {one} | {one} | {one} | 4 |" in table
        assert f"| both-right | {zero} | {zero} | {zero} | 4 |" in table
    # mixed: de +0.0 (one entry each way), es +50.0, pooled +25.0; intervals from the bootstrap
    table = _table_after(md, "**toy**, code-switching penalty")
    mixed = next(line for line in table if line.startswith("| mixed |"))
    assert [cell.split(" [")[0] for cell in mixed.split(" | ")[1:4]] == ["+0.0", "+50.0", "+25.0"]
    assert mixed.endswith(" | 4 |")
    # penalty difference, pooled over languages, per dataset and over all datasets
    diff = "| translated-only | both-right | toy | +100.0 | +0.0 | -100.0 | [-100.0, -100.0] |"
    assert diff in md
    assert "| translated-only | both-right | all datasets | +100.0 | +0.0 | -100.0 |" in md


def test_markdown_direction_table(results: EvalResults) -> None:
    md = to_markdown(to_json(results))
    head = (
        "| A | B | toy: target + English words | toy: English + target words "
        "| all datasets: target + English words | all datasets: English + target words |"
    )
    assert head in md
    one = "+100.0 [+100.0, +100.0]"
    assert f"| translated-only | both-right | {one} | {one} | {one} | {one} |" in md


@pytest.mark.parametrize(
    ("query_id", "entry"),
    [("oscar:de:cs-tgt:oscar:3f2a", "oscar:3f2a"), ("debian-faq:de:cs-tgt:whatis", "whatis")],
)
def test_entry_of(query_id: str, entry: str) -> None:
    assert entry_of(query_id, "de", "cs-tgt") == entry


@pytest.mark.parametrize("query_id", ["t1", "oscar:fr:cs-tgt:e1", "oscar:de:translated:e1"])
def test_entry_of_refuses_other_ids(query_id: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        entry_of(query_id, "de", "cs-tgt")


def test_two_queries_for_one_entry_are_refused(results: EvalResults) -> None:
    run = results.run("mixed")
    key = ("toy", "es", "cs-tgt")
    run.query_ids[key] = [run.query_ids[key][0]] * 2
    with pytest.raises(ValueError, match="two queries"):
        results.penalties()
