from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from model_export.training.config import ConfigError, config_from_dict, load_config
from model_export.training.data import (
    Pair,
    aligned_paragraph_pairs,
    dedupe,
    faq_pairs,
    oscar_pairs,
    parse_po,
    read_pairs,
    select_languages,
    write_pairs,
)

REPO = Path(__file__).resolve().parents[2]

PO = r"""
msgid ""
msgstr ""
"Language: fr\n"

#: templates/basket.html:10
msgid "Your basket is empty"
msgstr "Votre panier est vide"

#, fuzzy
msgid "Track your order"
msgstr "Suivre la commande"

msgid ""
"Proceed to "
"checkout"
msgstr "Passer à la caisse"

msgid "%(count)s items in your basket"
msgstr "%(count)s articles dans votre panier"

msgid "Basket"
msgstr "Panier"

msgid "One item"
msgid_plural "%(n)s items"
msgstr[0] "Un article"
msgstr[1] "%(n)s articles"
"""


def test_parse_po_handles_continuations_fuzzy_and_plurals() -> None:
    entries = {m: (s, f) for m, s, f in parse_po(PO)}
    assert entries["Proceed to checkout"] == ("Passer à la caisse", False)
    assert entries["Track your order"][1] is True
    assert "One item" not in entries


def test_oscar_pairs_from_wheel_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "django_oscar-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("oscar/locale/fr/LC_MESSAGES/django.po", PO)
        zf.writestr("oscar/locale/pt_BR/LC_MESSAGES/django.po", PO.replace("Language: fr", "x"))
        zf.writestr("oscar/locale/th/LC_MESSAGES/django.po", PO)
    pairs = oscar_pairs(wheel, ["fr", "pt"])
    by_lang = {p.lang for p in pairs}
    assert by_lang == {"fr", "pt"}  # pt_BR counts as pt; th is not a training language
    fr = {p.label: p.query for p in pairs if p.lang == "fr"}
    assert fr["Your basket is empty"] == "Votre panier est vide"
    assert fr["items in your basket"] == "articles dans votre panier"  # placeholder removed
    assert "Track your order" not in fr  # fuzzy
    assert "Basket" not in fr  # single words are too short to be a query


def test_aligned_paragraphs_skip_misaligned_chapters(tmp_path: Path) -> None:
    en, es = tmp_path / "en", tmp_path / "es"
    en.mkdir()
    es.mkdir()
    (en / "ch01.en.html").write_text(
        "<p>The package manager installs software.</p><p>Run apt update first please.</p>"
    )
    (es / "ch01.es.html").write_text(
        "<p>El gestor de paquetes instala software.</p><p>Ejecute apt update primero.</p>"
    )
    (en / "ch02.en.html").write_text("<p>One two three four.</p><p>Five six seven eight.</p>")
    (es / "ch02.es.html").write_text("<p>Uno dos tres cuatro.</p>")
    pairs = aligned_paragraph_pairs(en, es, "es")
    assert [(p.query, p.label) for p in pairs] == [
        ("El gestor de paquetes instala software.", "The package manager installs software."),
        ("Ejecute apt update primero.", "Run apt update first please."),
    ]


def test_faq_pairs_and_round_trip(tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    faq.write_text(
        json.dumps({"id": "1", "question": "Where is my order?", "answer": "..."})
        + "\n"
        + json.dumps({"id": "2", "question": "¿Dónde está mi pedido?", "lang": "es"})
        + "\n"
    )
    pairs = faq_pairs(faq)
    assert pairs[0] == Pair("Where is my order?", "Where is my order?", "en", "faq")
    assert pairs[1].lang == "es"
    out = tmp_path / "pairs.jsonl"
    assert write_pairs(pairs, out) == 2
    assert read_pairs(out) == pairs


def test_language_selection_and_dedupe() -> None:
    pairs = [
        Pair("a", "b", "de"),
        Pair("c", "d", "th"),
        Pair("A ", "b", "de"),
        Pair("e", "f", "ms"),
    ]
    kept, left_out = select_languages(pairs, ["en", "de"])
    assert [p.lang for p in kept] == ["de", "de"]
    assert dict(left_out) == {"th": 1, "ms": 1}
    assert len(dedupe(kept)) == 1


def test_config_partial_tables_keep_defaults_and_reject_typos() -> None:
    cfg = config_from_dict({"finetune": {"optim": {"batch_size": 8}}, "seed": 3})
    assert cfg.finetune.optim.batch_size == 8
    assert cfg.finetune.optim.lr == 2e-5  # fine-tuning's own default survives
    assert cfg.seed == 3
    with pytest.raises(ConfigError, match="unknown settings"):
        config_from_dict({"pretrain": {"mlm_wieght": 0.2}})
    with pytest.raises(ConfigError, match="not one of"):
        config_from_dict({"codeswitch": {"policy": "sometimes"}})
    with pytest.raises(ConfigError, match="expected int"):
        config_from_dict({"seed": "13"})


def test_shipped_configs_load() -> None:
    configs = sorted((REPO / "configs" / "train").glob("*.toml"))
    assert len(configs) >= 7
    loaded = {p.stem: load_config(p) for p in configs}
    assert loaded["ablation-no-codeswitch"].codeswitch.enabled is False
    assert loaded["ablation-no-similarity"].pretrain.similarity_loss is False
    rates = {loaded[f"ablation-cs-rate-{r:02d}"].codeswitch.rate for r in (5, 10, 15, 20)}
    assert rates == {0.05, 0.10, 0.15, 0.20}


def test_a_variant_extends_its_recipe_table_by_table(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.toml").write_text(
        'name = "base"\nseed = 7\n[finetune]\nloss = "clear"\n[finetune.optim]\n'
        'batch_size = 8\nmax_steps = 50\n[codeswitch]\nlanguages = ["de", "fr"]\n'
    )
    (tmp_path / "mid.toml").write_text(
        'extends = "recipes/base.toml"\nname = "mid"\n[finetune.optim]\nmax_steps = 9\n'
    )
    (tmp_path / "leaf.toml").write_text(
        'extends = "mid.toml"\nname = "leaf"\n[codeswitch]\nlanguages = ["es"]\n'
    )
    leaf = load_config(tmp_path / "leaf.toml")
    assert leaf.name == "leaf" and leaf.seed == 7
    # A table merges key by key: the optimiser keeps the recipe's batch size under mid's steps.
    assert (leaf.finetune.loss, leaf.finetune.optim.batch_size) == ("clear", 8)
    assert leaf.finetune.optim.max_steps == 9
    # Any other value replaces: a list is not appended to.
    assert leaf.codeswitch.languages == ["es"]
    assert load_config(tmp_path / "mid.toml").codeswitch.languages == ["de", "fr"]


def test_a_config_that_cannot_be_read_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match=r"a\.toml: extends itself"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "orphan.toml").write_text('extends = "gone.toml"\n')
    with pytest.raises(ConfigError, match=r"gone\.toml: no such config file"):
        load_config(tmp_path / "orphan.toml")
    (tmp_path / "broken.toml").write_text('name = "x\n')
    with pytest.raises(ConfigError, match=r"broken\.toml: .*line 1"):
        load_config(tmp_path / "broken.toml")
    (tmp_path / "typo.toml").write_text('extends = "mid.toml"\n[finetune]\nlos = "clear"\n')
    (tmp_path / "mid.toml").write_text('name = "mid"\n')
    with pytest.raises(ConfigError, match=r"typo\.toml: finetune: unknown settings \['los'\]"):
        load_config(tmp_path / "typo.toml")


def test_faq_model_train_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from model_export.cli import cli

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[pretrain]\nmlm_wieght = 0.2\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(bad)])
    assert result.exit_code == 2
    assert f"error: {bad}: pretrain: unknown settings ['mlm_wieght']" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "artifacts").exists()


def test_json_config(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"name": "j", "pretrain": {"mlm_weight": 0.2}}))
    assert load_config(p).pretrain.mlm_weight == 0.2
