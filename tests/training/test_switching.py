"""Language-aware switching in training: tables from the config, each side with its own
language, per-stage settings, which text reaches which loss input, cleaning, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from model_export.cli import cli
from model_export.dictionaries import Dictionary
from model_export.lexicon import clean, function_words, sense_key
from model_export.training.config import config_from_dict
from model_export.training.data import Pair, attach_negative_queries
from model_export.training.switching import DictionaryConfigError, build_switcher, load_tables
from model_export.training.trainer import (
    Batch,
    _Stage,
    build_switchers,
    finetune_inputs,
)

EN_DE = "order Bestellung\nrefund Rückerstattung\ndelivery Lieferung\nthe der\n"


def _muse(tmp_path: Path) -> Path:
    path = tmp_path / "en-de.txt"
    path.write_text(EN_DE, encoding="utf-8")
    return path


def _config(tmp_path: Path, **sections: Any) -> Any:
    raw: dict[str, Any] = {
        "codeswitch": {
            "policy": "rate",
            "rate": 1.0,
            "languages": ["de"],
            "dictionaries": {"de": {"from_en": [str(_muse(tmp_path))]}},
            "rank_by_frequency": False,
        },
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return config_from_dict(raw)


def test_reversed_fallback_is_marked_and_function_words_are_not_switched(
    tmp_path: Path,
) -> None:
    tables = load_tables(_config(tmp_path).codeswitch)
    report = tables.report()
    assert report["de"]["from_en"]["reversed"] is False
    assert report["de"]["to_en"]["reversed"] is True
    from_en = tables.tables[("de", "from_en")].dictionary
    assert "order" in from_en and "the" not in from_en  # "the" is an English function word
    assert report["de"]["from_en"]["dropped"]["function word"] == 1
    to_en = tables.tables[("de", "to_en")].dictionary
    assert to_en.lookup("Bestellung") == ["order"]


def test_missing_dictionary_file_names_the_config_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg.codeswitch.dictionaries["de"].to_en = [str(tmp_path / "nope.txt")]
    with pytest.raises(DictionaryConfigError, match=r"codeswitch\.dictionaries\.de\.to_en"):
        load_tables(cfg.codeswitch)


def _stage(cfg: Any) -> _Stage:
    switchers, _ = build_switchers(cfg)
    return _Stage(cfg, None, None, switchers, torch.device("cpu"))  # type: ignore[arg-type]


PAIRS = [
    Pair("Wo ist meine Bestellung", "Where is my order", lang="de", source="oscar:de"),
    Pair("refund the order", "Rückerstattung der Bestellung", lang="en", label_lang="de"),
]


def test_each_side_switches_with_its_own_language(tmp_path: Path) -> None:
    stage = _stage(_config(tmp_path))
    batch = stage.make_batch(PAIRS, 0, "pretrain")
    # German query -> English words; English label -> German words (towards the query's lang)
    assert batch.queries[0] == "Wo ist meine Order"
    assert batch.labels[0] == "Where is my Bestellung"
    assert batch.queries[1] == "Rückerstattung the Bestellung"
    assert batch.labels[1] == "Refund der Order"
    counts = stage.switch_counts["pretrain"]
    assert counts["query:de:to_en"] == 1 and counts["label:en:from_en"] == 1


def test_per_stage_switching(tmp_path: Path) -> None:
    # Defaults: pre-training switches (official code), fine-tuning does not.
    stage = _stage(_config(tmp_path))
    assert stage.make_batch(PAIRS, 0, "finetune").queries == [p.query for p in PAIRS]
    # Fine-tuning on, labels off; pre-training off.
    cfg = _config(
        tmp_path,
        pretrain={"codeswitch": {"enabled": False}},
        finetune={"codeswitch": {"enabled": True, "switch_labels": False}},
    )
    stage = _stage(cfg)
    assert stage.make_batch(PAIRS, 0, "pretrain").queries == [p.query for p in PAIRS]
    tuned = stage.make_batch(PAIRS, 0, "finetune")
    assert tuned.queries[0] == "Wo ist meine Order"
    assert tuned.labels == [p.label for p in PAIRS]


def test_stage_rate_overrides_the_shared_one(tmp_path: Path) -> None:
    cfg = _config(tmp_path, pretrain={"codeswitch": {"rate": 0.0}})
    stage = _stage(cfg)
    assert stage.make_batch(PAIRS, 0, "pretrain").queries == [p.query for p in PAIRS]


def test_ablation_builds_no_switcher(tmp_path: Path) -> None:
    cfg = _config(tmp_path, codeswitch={"enabled": False})
    switchers, report = build_switchers(cfg)
    assert switchers == {"pretrain": None, "finetune": None} and report == {}
    # the switcher itself refuses too (the CLI and other callers go through it directly)
    assert build_switcher(cfg.codeswitch, load_tables(cfg.codeswitch), seed=0) is None


def test_language_without_dictionary_is_counted(tmp_path: Path) -> None:
    stage = _stage(_config(tmp_path))
    stage.make_batch([Pair("Onde está o pedido", "Where is the order", lang="pt")], 0, "pretrain")
    counts = stage.switch_counts["pretrain"]
    assert counts["query:pt:none"] == 1


def test_loss_inputs_take_the_right_sides() -> None:
    pairs = attach_negative_queries(
        [
            # translation -> English (oscar): English side is the label
            Pair("Bestellung stornieren", "Cancel order", lang="de", negative="Track order"),
            Pair("Bestellung verfolgen", "Track order", lang="de"),
            # English -> translation (oscar reversed): English side is the query
            Pair("Refund", "Rückerstattung", lang="en", label_lang="de"),
            # same-language FAQ pair: no English side, not bitext
            Pair("Wo ist mein Paket", "Wo ist mein Paket", lang="de", label_lang="de"),
        ]
    )
    switched = ["SW0", "SW1", "SW2", "SW3"]
    batch = Batch(pairs, switched, [p.label for p in pairs])
    inputs = finetune_inputs(batch, hard_negatives=True)
    assert inputs.queries == switched  # q_tgt: the switched / non-English side
    assert inputs.labels == ["Cancel order", "Track order", "Rückerstattung", "Wo ist mein Paket"]
    assert inputs.q_en == ["Cancel order", "Track order", "Refund", "Wo ist mein Paket"]
    assert inputs.negatives == ["Track order"]
    # the negative label's own German query: CLEAR's target-query negative
    assert inputs.q_tgt_neg == ["Bestellung verfolgen"]
    # OPTICAL: bitext pairs with an English side only
    assert inputs.optical_rows == [0, 1, 2]
    assert finetune_inputs(batch, hard_negatives=False).q_tgt_neg == []


def test_clean_drops_xrefs_fragments_glosses_and_function_words() -> None:
    d = Dictionary("en", "de")
    for tgt in ["siehe Beschreibung", "in\u2010", "mit schöner Regelmäßigkeit", "Wunsch"]:
        d.add("wish", tgt)
    d.add("a", "ein")
    d.add("order", "Bestellung")
    out, report = clean(d, stop=function_words("en"))
    assert out.lookup("wish") == ["Wunsch"]
    assert "a" not in out and out.lookup("order") == ["Bestellung"]
    assert report.dropped["xref"] == 1
    assert report.dropped["fragment"] == 1
    assert report.dropped["gloss"] == 1
    assert report.dropped["function word"] == 1


def test_senses_ranked_mutual_best_then_frequency() -> None:
    d = Dictionary("en", "de")
    for tgt in ["Stand", "Bestellung"]:
        d.add("order", tgt)
    d.add("state", "Stand")
    freq = {"order": 5.0, "state": 6.0, "stand": 5.0, "bestellung": 4.0}.get

    def rank(word: str) -> float:
        return freq(word.casefold(), 0.0)

    out, _ = clean(d, order=sense_key(d, rank, rank), rank=rank)
    # "Stand" is more frequent but first means "state"; "Bestellung" is order's mutual best
    assert out.lookup("order") == ["Bestellung", "Stand"]
    out, _ = clean(d, rank=rank, min_zipf=4.5)
    assert out.lookup("order") == ["Stand"]


def test_build_switcher_refuses_when_no_table(tmp_path: Path) -> None:
    cfg = _config(tmp_path, codeswitch={"languages": ["th"]})
    tables = load_tables(cfg.codeswitch)
    assert tables.missing == {"th": ["to_en", "from_en"]}
    with pytest.raises(DictionaryConfigError, match=r"codeswitch\.enabled"):
        build_switcher(cfg.codeswitch, tables, seed=0)


# --- CLI --------------------------------------------------------------------------------------


def _cli_config(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(
        f"""
[codeswitch]
languages = ["de"]
rank_by_frequency = false
[codeswitch.dictionaries.de]
from_en = ["{_muse(tmp_path)}"]
""",
        encoding="utf-8",
    )
    return path


def test_cli_codeswitch_prints_text_and_swaps(tmp_path: Path) -> None:
    config = _cli_config(tmp_path)
    runner = CliRunner()
    args = ["codeswitch", "--config", str(config), "--policy", "rate", "--rate", "1"]
    out = runner.invoke(cli, [*args, "--lang", "de", "--text", "Wo ist die Bestellung"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "Wo ist die Order"
    assert "Bestellung -> Order" in lines[1] and "de->en, reversed" in lines[1]
    out = runner.invoke(cli, [*args, "--lang", "en", "--text", "where is the order"])
    assert out.output.splitlines()[0] == "where is the Bestellung"
    assert "en->de" in out.output


def test_cli_codeswitch_unknown_language_exits_2(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli, ["codeswitch", "--config", str(_cli_config(tmp_path)), "--lang", "th", "--text", "x"]
    )
    assert out.exit_code == 2
    assert "codeswitch.dictionaries.th" in out.output
    assert "Traceback" not in out.output


def test_cli_dict_coverage_reports_directions_and_coverage(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"query": "Wo ist die Bestellung", "label": "Where is the order", "lang": "de"})
        + "\n",
        encoding="utf-8",
    )
    out = CliRunner().invoke(
        cli, ["dict-coverage", "--config", str(_cli_config(tmp_path)), "--corpus", str(pairs)]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["de"]["to_en"]["reversed"] is True
    assert report["de"]["from_en"]["dropped"]["function word"] == 1
    # "where is the order": only "order" is in the en->de table
    assert report["de"]["from_en"]["coverage"]["covered_tokens"] == 1
    assert report["de"]["to_en"]["coverage"]["covered_tokens"] == 1
