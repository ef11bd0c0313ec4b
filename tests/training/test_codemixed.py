"""Real code-mixed pairs (data/codemixed/, Hinglish-TOP): read strictly, and never a way in for
evaluation text.

The guard tests plant evaluation texts (a shopper test query, a hard FAQ test query, a
third-party evaluation query and an English label) among the committed pairs and load them the
way `faq-model train` loads `shop-realcm.toml`'s data: each one must be refused, with the guard's
default sources (the trainer never names the shopper or hard FAQ directories).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export import hard_faq, shopper_data
from model_export.codemixed import (
    LANG,
    SOURCE,
    CodeMixedFormatError,
    build,
    hinglish_pairs,
    main,
    read_hinglish_top,
)
from model_export.eval_guard import EvalGuard, EvalLeakError, normalise
from model_export.training.config import config_from_dict, load_config
from model_export.training.data import Pair, read_pairs, write_pairs
from model_export.training.trainer import load_training_pairs

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "data" / "codemixed" / "hinglish-top.jsonl"
HEADER = "en_query\tcs_query\ten_parse\tcs_parse\tdomain\n"


def _tsv(path: Path, *rows: tuple[str, str]) -> Path:
    lines = [HEADER] + [f"{en}\t{cs}\t[IN:X {en} ]\t[IN:X {cs} ]\talarm\n" for en, cs in rows]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_rows_become_hinglish_to_english_pairs(tmp_path: Path) -> None:
    src = _tsv(
        tmp_path / "train.tsv",
        ("set alarm for 2 hours", "do ghante ke liye alarm set kardo"),
        ("Delete alarm", "Delete alarm"),  # one text on both sides: not code-mixed
        ("set alarm for 2 hours", "do  ghante ke liye alarm set kardo"),  # duplicate
    )
    pairs = hinglish_pairs(read_hinglish_top(src))
    assert pairs == [
        Pair(
            "do ghante ke liye alarm set kardo",
            "set alarm for 2 hours",
            lang=LANG,
            source=SOURCE,
            label_lang="en",
        )
    ]
    assert pairs[0].is_bitext


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + "a\tb\tc\td\te\nonly\ttwo\n", r"train\.tsv:3: expected 5 tab-separated columns"),
        (HEADER + "a\t \tc\td\te\n", r"train\.tsv:2: empty cs_query"),
        ("query\tlabel\n", r"train\.tsv:1: expected the header"),
        (HEADER, r"train\.tsv: no rows after the header"),
    ],
)
def test_a_malformed_file_names_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    src = tmp_path / "train.tsv"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(CodeMixedFormatError, match=message):
        read_hinglish_top(src)


def test_the_builder_cli_says_what_is_wrong_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "train.tsv"
    src.write_text(HEADER + "only\ttwo\n", encoding="utf-8")
    args = ["--input", str(src), "--out", str(tmp_path / "out.jsonl")]
    assert main([*args, "--eval-dir", str(tmp_path / "none")]) == 2
    assert f"{src}:2: expected 5" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_the_builder_drops_evaluation_text_on_either_side(tmp_path: Path) -> None:
    src = _tsv(
        tmp_path / "train.tsv",
        ("set alarm for 2 hours", "do ghante ke liye alarm set kardo"),
        ("Delete alarm", "alarm ko delete kare"),
        ("play some jazz", "thoda jazz bajao"),
    )
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    # django-oscar's German cs-en query "Delete Alarm # ?" is "delete alarm" to the guard: the
    # one pair the real build dropped. And a Hinglish side, as a near-duplicate.
    rows = [{"query": "Delete Alarm # ?"}, {"text": "Thoda JAZZ bajao!"}]
    (eval_dir / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    guard = EvalGuard.from_sources(
        [eval_dir], debian_faq_dir=None, shopper_dir=None, hard_faq_dir=None, mode="drop"
    )
    report = build(src, tmp_path / "out.jsonl", guard)
    assert (report.rows, report.guard_dropped, report.written) == (3, 2, 1)
    assert [p.query for p in read_pairs(tmp_path / "out.jsonl")] == [
        "do ghante ke liye alarm set kardo"
    ]


def test_the_committed_file_is_small_hinglish_to_english_and_holds_no_evaluation_text() -> None:
    pairs = read_pairs(COMMITTED)
    assert 1000 <= len(pairs) <= 3000
    assert COMMITTED.stat().st_size < 1_000_000
    assert {(p.lang, p.label_lang, p.source) for p in pairs} == {(LANG, "en", SOURCE)}
    # The guard the trainer builds by default (shopper and hard FAQ dev/test, gaps, the Debian
    # FAQ, artifacts/eval where it is built).
    guard = EvalGuard.from_sources(mode="raise")
    assert [p for p in pairs if guard.leaks(p)] == []


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """The committed pairs with four evaluation texts planted among them, and an eval dir."""
    shopper_test = next(
        q.query
        for q in shopper_data.load_queries(shopper_data.DEFAULT_DIR / "test.jsonl")
        if q.lang == LANG
    )
    hard_test = hard_faq.load_queries(hard_faq.DEFAULT_DIR / "test.jsonl")[0].query
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    third_party, english = "mera parcel kab tak pahunchega", "Where is my parcel right now"
    rows = [{"query": third_party}, {"question": english}]
    (eval_dir / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    real = read_pairs(COMMITTED)
    pairs = [
        *real[:50],
        Pair(shopper_test, "Where is my order?", lang=LANG, source=SOURCE),
        Pair(hard_test.upper() + " ?", "Can I return it?", lang=LANG, source=SOURCE),
        Pair(third_party, "When will my parcel arrive?", lang=LANG, source=SOURCE),
        Pair("mera parcel abhi kaha hai", english, lang=LANG, source=SOURCE),
    ]
    path = tmp_path / "hinglish-top.jsonl"
    write_pairs(pairs, path)
    return path, eval_dir, [p.query for p in real[:50]]


def _realcm_data(pairs_file: Path, eval_dir: Path, mode: str) -> dict[str, object]:
    """shop-realcm.toml's data section with the planted file as its code-mixed one."""
    data = load_config(REPO / "configs" / "train" / "shop-realcm.toml").data
    return {
        "train_files": [str(pairs_file)],
        "languages": list(data.languages),
        "eval_dirs": [str(eval_dir)],
        "debian_faq_dir": "",
        "guard_mode": mode,
        "dedupe": data.dedupe,
    }


def test_the_trainer_refuses_evaluation_text_in_the_codemixed_file(
    planted: tuple[Path, Path, list[str]],
) -> None:
    path, eval_dir, real = planted
    raw = {"dev_fraction": 0.0, "data": _realcm_data(path, eval_dir, "raise")}
    with pytest.raises(EvalLeakError, match="4 training pairs contain evaluation text"):
        load_training_pairs(config_from_dict(raw))
    raw = {"dev_fraction": 0.0, "data": _realcm_data(path, eval_dir, "drop")}
    pairs, summary = load_training_pairs(config_from_dict(raw))
    assert summary.guard_dropped == 4
    assert [p.query for p in pairs] == real
    assert summary.by_source == {SOURCE: len(real)}
    guard = EvalGuard.from_sources([eval_dir], debian_faq_dir=None)
    assert not any(guard.leaks(p) for p in pairs)
    assert all(normalise(p.query) not in guard.texts for p in pairs)
