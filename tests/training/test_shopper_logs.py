"""The shopper query log (data/shopper) and `faq-model build-data --source logs`. No model."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_export.cli import cli
from model_export.eval_guard import EvalGuard, normalise
from model_export.shopper_data import (
    DEFAULT_DIR,
    DEFAULT_FAQ,
    DEFAULT_QUERIES,
    HELD_OUT_LANGUAGES,
    LANGUAGES,
    SPLITS,
    ShopperQuery,
    counts_table,
    faq_topics,
    load_queries,
    split,
    split_of,
    write_splits,
)
from model_export.training.data import Pair
from model_export.training.logs import LanguageDetector, build_log_pairs

ASIAN = {"id", "ms", "tl", "vi", "th", "hi", "ja", "ko", "zh"}
EUROPEAN = {"es", "pt", "fr", "de", "it", "nl", "tr"}


GAPS = Path(__file__).resolve().parents[2] / "data" / "gaps" / "queries.jsonl"


@pytest.fixture(scope="module")
def queries() -> list[ShopperQuery]:
    return load_queries(DEFAULT_QUERIES, faq=DEFAULT_FAQ)


# --- the data ---------------------------------------------------------------------------------


def test_log_size_languages_kinds_and_topics(queries: list[ShopperQuery]) -> None:
    assert len(queries) >= 1500
    langs = Counter(q.lang for q in queries)
    assert len(langs) >= 10 and set(langs) == set(LANGUAGES)
    assert len(ASIAN & set(langs)) >= 5 and len(EUROPEAN & set(langs)) >= 5
    for lang in set(langs) - {"en"}:
        kinds = {q.kind for q in queries if q.lang == lang}
        assert kinds == {"monolingual", "code_mixed"}, lang
    per_topic = Counter(q.faq_id for q in queries)
    assert set(per_topic) == faq_topics(DEFAULT_FAQ)
    assert min(per_topic.values()) >= 25


def test_no_query_is_an_faq_text(queries: list[ShopperQuery]) -> None:
    """The guard refuses dev/test texts as labels too: an FAQ question among them would take the
    FAQ's own training pairs out of every run."""
    faq_texts = set()
    for line in DEFAULT_FAQ.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        faq_texts |= {normalise(row["question"]), normalise(row["answer"])}
    assert not [q.query for q in queries if normalise(q.query) in faq_texts]


def test_split_sizes_and_held_out_languages(queries: list[ShopperQuery]) -> None:
    parts = split(queries)
    assert len(parts["test"]) >= 500 and len(parts["dev"]) >= 150
    assert {q.lang for q in parts["train"]} & HELD_OUT_LANGUAGES == set()
    for lang in HELD_OUT_LANGUAGES:
        assert sum(q.lang == lang for q in parts["test"]) >= 50
    assert {q.faq_id for q in parts["test"]} == faq_topics(DEFAULT_FAQ)


def test_split_of_depends_on_the_text_only(queries: list[ShopperQuery]) -> None:
    shuffled = queries[:]
    random.Random(3).shuffle(shuffled)
    assert split(shuffled) == split(queries)
    q = next(q for q in queries if q.lang == "es")
    relabelled = ShopperQuery(q.query, "payment-cod", "pt", "monolingual")
    assert split_of(relabelled) == split_of(q)
    # A near-duplicate (case, punctuation, spacing) goes where its twin goes.
    twin = ShopperQuery(f"  {q.query.upper()} ?!", q.faq_id, q.lang, q.kind)
    assert split_of(twin) == split_of(q)
    # Every language draws all three splits unless held out.
    assert {split_of(x) for x in queries if x.lang == "th"} == set(SPLITS)


def test_committed_split_files_and_readme_are_current(
    queries: list[ShopperQuery], tmp_path: Path
) -> None:
    """Also pins the hash across processes: Python's salted hash() would re-draw the split."""
    write_splits(queries, tmp_path)
    for name in SPLITS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (
            DEFAULT_DIR / f"{name}.jsonl"
        ).read_bytes(), f"run: python -m model_export.shopper_data ({name}.jsonl is stale)"
    assert counts_table(queries) in (DEFAULT_DIR / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad JSON"),
        ('{"query": "x", "faq_id": "order-cancel", "lang": "es"}', "missing or empty field 'kind'"),
        ('{"query": "x", "faq_id": "order-cancel", "lang": "es", "kind": "mixed"}', "unknown kind"),
        ('{"query": "x", "faq_id": "nope", "lang": "es", "kind": "monolingual"}', "faq_id 'nope'"),
        ('{"query": "x", "faq_id": "order-cancel", "lang": "es", "kind": "english"}', "lang 'es'"),
        (
            '{"query": "OK!", "faq_id": "order-cancel", "lang": "en", "kind": "english"}',
            "as line 1",
        ),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_load_queries_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    good = '{"query": "ok", "faq_id": "order-cancel", "lang": "en", "kind": "english"}'
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"q\.jsonl:3: .*{message}") as exc:
        load_queries(path, faq=DEFAULT_FAQ)
    assert str(exc.value).startswith(f"{path}:3: ")


def test_guard_refuses_dev_and_test_queries(queries: list[ShopperQuery], tmp_path: Path) -> None:
    guard = EvalGuard.from_sources([tmp_path / "none"], debian_faq_dir=None, mode="drop")
    held = [q for q in queries if split_of(q) != "train"]
    train = [q for q in queries if split_of(q) == "train"]
    pairs = [Pair(q.query, "Where is my order and how can I track it?") for q in queries]
    # Near-duplicates of a test query, as the query or as the label.
    test_q = next(q.query for q in held if split_of(q) == "test")
    pairs += [Pair(f"{test_q.upper()}!!", "x"), Pair("unrelated", f" {test_q} ?")]
    kept, dropped = guard.filter(pairs)
    assert dropped == len(held) + 2
    assert {p.query for p in kept} == {q.query for q in train}
    off = EvalGuard.from_sources(
        [tmp_path / "none"],
        debian_faq_dir=None,
        shopper_dir=None,
        hard_faq_dir=None,
        gaps_dir=None,
    )
    assert off.texts == frozenset()


def test_guard_lets_the_dev_split_in_only_when_asked_and_never_test(
    queries: list[ShopperQuery], tmp_path: Path
) -> None:
    guard = EvalGuard.from_sources(
        [tmp_path / "none"], debian_faq_dir=None, allow_shopper_splits=("dev",), mode="drop"
    )
    by_split = {s: [q for q in queries if split_of(q) == s] for s in ("train", "dev", "test")}
    kept, dropped = guard.filter([Pair(q.query, "x") for q in queries])
    assert dropped == len(by_split["test"])
    assert {p.query for p in kept} == {q.query for q in by_split["train"] + by_split["dev"]}
    with pytest.raises(ValueError, match="test split is what is measured"):
        EvalGuard.from_sources([tmp_path / "none"], allow_shopper_splits=("dev", "test"))
    out = tmp_path / "pairs.jsonl"
    log = _write_csv(tmp_path / "log.csv", [{"query": "q", "faq_id": "order-cancel"}])
    args = ["build-data", "--source", "logs", "--faq", str(DEFAULT_FAQ), "--logs", str(log)]
    result = runner.invoke(cli, [*args, "--out", str(out), "--allow-split", "test"])
    assert result.exit_code == 2 and "test split" in result.output


def test_guard_refuses_the_planted_gap_questions(tmp_path: Path) -> None:
    # data/gaps: what make demo-loop replays as topics the FAQ lacks; never training data.
    gaps = [json.loads(line)["query"] for line in GAPS.read_text("utf-8").splitlines()]
    assert len(gaps) >= 200
    guard = EvalGuard.from_sources([tmp_path / "none"], debian_faq_dir=None, mode="drop")
    assert guard.filter([Pair(q, "x") for q in gaps]) == ([], len(gaps))


# --- build-data --source logs -----------------------------------------------------------------

runner = CliRunner()


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["query", "faq_id", "lang", "clicks"])
        w.writeheader()
        w.writerows(rows)
    return path


def _build(tmp_path: Path, log: Path, *extra: str) -> tuple[int, str, str, list[dict[str, str]]]:
    out = tmp_path / "pairs.jsonl"
    args = ["build-data", "--source", "logs", "--faq", str(DEFAULT_FAQ), "--logs", str(log)]
    args += ["--out", str(out), "--eval-dir", str(tmp_path / "no-eval"), *extra]
    res = runner.invoke(cli, args)
    assert "Traceback" not in res.output + res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    pairs = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return res.exit_code, res.stdout, res.stderr, pairs


def test_logs_csv_and_jsonl_join_to_the_english_question(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"query": "mi paquete no llega todavía", "faq_id": "order-track.es", "lang": "es"},
        {"query": "how to cancle order", "faq_id": "order-cancel", "lang": "en", "clicks": 4},
        {"query": "no clicks here", "faq_id": "order-cancel", "lang": "en", "clicks": 0},
        {"query": "How to cancle order?", "faq_id": "order-cancel", "lang": "en", "clicks": 1},
    ]
    csv_log = _write_csv(tmp_path / "log.csv", rows)
    jsonl_log = tmp_path / "log.jsonl"
    jsonl_log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for log in (csv_log, jsonl_log):
        code, stdout, _, pairs = _build(tmp_path, log, "--with-answers")
        assert code == 0, stdout
        summary = json.loads(stdout)
        assert summary["rows"] == 4 and summary["low_clicks_dropped"] == 1
        assert summary["duplicates_merged"] == 1 and summary["written"] == 4
        assert [(p["query"], p["label"], p["lang"], p["source"]) for p in pairs[::2]] == [
            (
                "mi paquete no llega todavía",
                "Where is my order and how can I track it?",
                "es",
                "logs",
            ),
            ("how to cancle order", "How do I cancel my order?", "en", "logs"),
        ]
        assert pairs[1]["label"].startswith("Go to My Orders") and pairs[1]["label_lang"] == "en"
        assert pairs[1]["source"] == "logs:answer"


def test_detection_fills_missing_languages(tmp_path: Path) -> None:
    clear = {
        "¿Dónde está mi pedido? Lo compré hace dos semanas": "es",
        "Wo ist mein Paket? Ich warte schon seit einer Woche": "de",
        "Où est mon colis, je l'attends depuis dix jours": "fr",
        "Pesanan saya belum sampai sampai sekarang, tolong dicek": "id",
        "Where is my parcel, I ordered it two weeks ago": "en",
        "注文をキャンセルしたいです": "ja",
        "배송이 너무 늦어요 언제 와요": "ko",
        "我的包裹到哪了": "zh",
        "ของยังไม่มาเลยค่ะ order ไปนานแล้ว": "th",
    }
    log = _write_csv(tmp_path / "log.csv", [{"query": q, "faq_id": "order-track"} for q in clear])
    code, stdout, _, pairs = _build(tmp_path, log)
    assert code == 0
    assert {p["query"]: p["lang"] for p in pairs} == clear
    assert json.loads(stdout)["detected"] == len(clear)
    # English words inside a short Asian-script query do not make it English.
    assert LanguageDetector().detect("account delete 하고 싶어요") == "ko"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("query,lang\nhello,en\n", 1, "missing column 'faq_id'"),
        ("query,faq_id,lang,clicks\nok,order-cancel,en,1\n ,order-cancel,en,1\n", 3, "empty query"),
        ("query,faq_id,lang,clicks\nok,order-cancel,en,1\nhi,,en,1\n", 3, "empty faq_id"),
        ("query,faq_id,lang,clicks\nok,order-cancel,en,many\n", 2, "clicks must be a whole"),
        ("query,faq_id,lang,clicks\nok,order-cancel,en,-1\n", 2, "clicks must be a whole"),
    ],
)
def test_bad_csv_row_exits_2_with_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    log = tmp_path / "log.csv"
    log.write_text(body, encoding="utf-8")
    code, _, stderr, _ = _build(tmp_path, log)
    assert code == 2
    assert f"{log}:{line}: {message}" in stderr


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{oops", "bad JSON"),
        ('{"faq_id": "order-cancel"}', "missing field 'query'"),
        ('{"query": "x", "faq_id": "order-cancel", "clicks": 1.5}', "clicks must be a whole"),
        ('{"query": "x", "faq_id": "order-cancel", "lang": 7}', "lang must be a language code"),
    ],
)
def test_bad_jsonl_row_exits_2_with_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"query": "ok", "faq_id": "order-cancel"}\n' + bad + "\n", encoding="utf-8")
    code, _, stderr, _ = _build(tmp_path, log)
    assert code == 2 and f"{log}:2: {message}" in stderr


def test_unknown_ids_are_counted_and_stop_above_the_threshold(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"query": f"where is order number {i}", "faq_id": "order-track", "lang": "en"}
        for i in range(9)
    ]
    rows.append({"query": "old topic", "faq_id": "retired-topic", "lang": "en"})
    log = _write_csv(tmp_path / "log.csv", rows)
    code, _, stderr, _ = _build(tmp_path, log)  # 10% > the default 5%
    assert code == 2 and "1 of 10 rows (10.0%)" in stderr and "retired-topic" in stderr
    code, stdout, _, pairs = _build(tmp_path, log, "--max-unknown", "0.1")
    assert code == 0 and len(pairs) == 9
    unknown = json.loads(stdout)["unknown_ids"]
    assert unknown == {"rows": 1, "share": 0.1, "distinct": 1, "examples": ["retired-topic"]}


def test_logs_never_pass_a_dev_or_test_query(queries: list[ShopperQuery], tmp_path: Path) -> None:
    test_qs = [q for q in queries if split_of(q) == "test"][:20]
    dev_q = next(q for q in queries if split_of(q) == "dev")
    train_qs = [q for q in queries if split_of(q) == "train"][:20]
    rows: list[dict[str, object]] = [
        {"query": q.query, "faq_id": q.faq_id, "lang": q.lang} for q in [*test_qs, dev_q, *train_qs]
    ]
    # A near-duplicate under another topic (the same topic would be merged before the guard).
    other = "product-warranty" if test_qs[0].faq_id != "product-warranty" else "order-track"
    rows.append({"query": test_qs[0].query.upper() + " ??", "faq_id": other, "lang": "en"})
    code, stdout, _, pairs = _build(tmp_path, _write_csv(tmp_path / "log.csv", rows))
    assert code == 0
    assert json.loads(stdout)["guard_dropped"] == len(test_qs) + 2
    assert {p["query"] for p in pairs} == {q.query for q in train_qs}


def test_build_log_pairs_without_the_cli(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"query": "kab aayega mera order", "faq_id": "order-track", "lang": "hi"}\n')
    pairs, summary = build_log_pairs(log, DEFAULT_FAQ)
    assert pairs == [
        Pair(
            "kab aayega mera order",
            "Where is my order and how can I track it?",
            "hi",
            "logs",
            topic="order-track",
        )
    ]
    assert summary.by_lang == Counter({"hi": 1}) and summary.detected == 0
