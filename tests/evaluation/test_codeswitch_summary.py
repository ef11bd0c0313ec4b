"""summary.json's `codeswitch` object: its shape, and its pooled arithmetic on a tiny fixture.

Every expected value below is worked out by hand from the per-query R@1 arrays of the fixture,
not computed by the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from model_export.evaluation.codeswitch_summary import (
    FaqScores,
    codeswitch_object,
    is_romanised,
    read_scripts,
)
from model_export.evaluation.encoders import ModelSpec
from model_export.evaluation.runner import EvalConfig, EvalResults, ModelRun
from model_export.shopper_data import ShopperQuery

KEYS = {
    "code_mixed_delta_r1",
    "code_mixed_delta_ci95",
    "penalty",
    "romanised",
    "hard_faq",
    "english_controls",
    "meta",
    "variants",
}
MODELS = {"base", "shop", "shop_no_cs"}


def _q(text: str, lang: str, kind: str) -> ShopperQuery:
    return ShopperQuery(text, "topic", lang, kind)


# The shopper log's test queries: no `script` field, so romanised is read off the text.
SHOPPER = [
    _q("where is my order", "en", "english"),
    _q("dónde está mi order", "es", "code_mixed"),
    _q("mera order kahan hai", "hi", "code_mixed"),  # Hindi in Latin letters: romanised
    _q("注文 cancel したい", "ja", "code_mixed"),  # Japanese with an English word: not
    _q("मेरा ऑर्डर कहाँ है", "hi", "monolingual"),  # Devanagari: not
]
SHOPPER_R1 = {
    "shop": [1, 1, 1, 0, 1],
    "shop_no_cs": [1, 0, 1, 0, 1],
    "base": [0, 0, 0, 1, 1],
}
# The hard FAQ's: with a `script` field.
HARD = [
    _q("order kab aayega", "hi", "code_mixed"),  # latn: romanised
    _q("ma commande est late", "fr", "code_mixed"),  # latn, but French is written in Latin
    _q("मेरा रिफंड", "hi", "monolingual"),  # deva
    _q("wo ist meine order", "de", "code_mixed"),  # no script
]
HARD_SCRIPTS: list[str | None] = ["latn", "latn", "deva", None]
HARD_R1 = {
    "shop": [1, 1, 0, 0],
    "shop_no_cs": [0, 1, 0, 0],
    "base": [1, 0, 1, 0],
}
CONTROLS = {
    "debian_en": {"base": {"r1": 0.9, "n": 100}, "shop": {"r1": 0.8, "n": 100}},
    "oscar_en": {"base": {"r1": 1.0, "n": 300}, "shop": {"r1": 0.9, "n": 300}},
}


def _faq(
    name: str,
    queries: Sequence[ShopperQuery],
    scripts: Sequence[str | None],
    r1: Mapping[str, Sequence[int]],
) -> FaqScores:
    return FaqScores(
        name, queries, scripts, {m: np.array(v, dtype=np.float64) for m, v in r1.items()}
    )


# (dataset, lang, kind) -> (entry ids, R@1 per query) of each model; "e3" and "o1" have no
# cs-tgt query, so a penalty over every translated query would differ from the paired one.
PenaltySets = dict[str, dict[tuple[str, str, str], tuple[list[str], list[float]]]]
PENALTY_SETS: PenaltySets = {
    "base": {
        ("debian-faq", "de", "translated"): (["e1", "e2", "e3"], [1, 1, 0]),
        ("debian-faq", "de", "cs-tgt"): (["e1", "e2"], [0, 1]),
        ("oscar", "fr", "translated"): (["o1", "o2"], [1, 1]),
        ("oscar", "fr", "cs-tgt"): (["o2"], [0]),
    },
    "shop": {
        ("debian-faq", "de", "translated"): (["e1", "e2", "e3"], [1, 1, 1]),
        ("debian-faq", "de", "cs-tgt"): (["e1", "e2"], [1, 1]),
        ("oscar", "fr", "translated"): (["o1", "o2"], [0, 1]),
        ("oscar", "fr", "cs-tgt"): (["o2"], [1]),
    },
}


def _penalty_results(penalty_sets: PenaltySets = PENALTY_SETS) -> EvalResults:
    runs = []
    for model, sets in penalty_sets.items():
        run = ModelRun(ModelSpec(model, "onnx"), "ok")
        for (ds, lang, kind), (entries, r1) in sets.items():
            run.per_query[(ds, lang, kind)] = {"R@1": np.array(r1, dtype=np.float64)}
            run.query_ids[(ds, lang, kind)] = [f"{ds}:{lang}:{kind}:{e}" for e in entries]
        runs.append(run)
    config = EvalConfig(models=[r.spec for r in runs], datasets=["debian-faq", "oscar"])
    return EvalResults(config, {}, runs)


def test_pooled_delta_penalty_romanised_and_hard_faq_by_hand() -> None:
    shopper = _faq("shopper", SHOPPER, [None] * len(SHOPPER), SHOPPER_R1)
    hard = _faq("hard_faq", HARD, HARD_SCRIPTS, HARD_R1)
    obj = codeswitch_object(
        [shopper, hard],
        hard_faq=hard,
        third_party=_penalty_results(),
        controls=CONTROLS,
        n_boot=2000,
    )
    assert set(obj) == KEYS
    # Code-mixed queries: shopper 1, 2, 3 and hard 0, 1, 3. shop 1,1,0,1,1,0 (4/6),
    # shop_no_cs 0,1,0,0,1,0 (2/6).
    assert obj["code_mixed_delta_r1"] == pytest.approx(2 / 6)
    lo, hi = obj["code_mixed_delta_ci95"]
    assert -1.0 <= lo <= 2 / 6 <= hi <= 1.0 and lo < hi
    assert obj["meta"]["code_mixed_n"] == 6
    assert obj["meta"]["faqs"] == ["shopper", "hard_faq"]
    # Paired entries only: base de e1 (1 vs 0), e2 (1 vs 1), fr o2 (1 vs 0): 3/3 - 1/3;
    # shop e1 (1, 1), e2 (1, 1), o2 (1, 1): 0. shop_no_cs was not scored.
    assert obj["penalty"] == pytest.approx({"base": 2 / 3, "shop": 0.0, "shop_no_cs": None})
    assert obj["meta"]["penalty_n"] == {"base": 3, "shop": 3, "shop_no_cs": 0}
    # Romanised: shopper 2 (Hindi in Latin letters) and hard 0 (hi, latn); not the French one.
    assert obj["romanised"] == pytest.approx({"n": 2, "base": 0.5, "shop": 1.0, "shop_no_cs": 0.5})
    assert obj["hard_faq"] == pytest.approx({"n": 4, "base": 0.5, "shop": 0.5, "shop_no_cs": 0.25})
    # (0.9 * 100 + 1.0 * 300) / 400 and (0.8 * 100 + 0.9 * 300) / 400
    assert obj["english_controls"] == pytest.approx({"base": 0.975, "shop": 0.875})


def test_nulls_where_a_model_or_the_hard_faq_is_missing() -> None:
    only_base = {"base": SHOPPER_R1["base"]}
    shopper = _faq("shopper", SHOPPER, [None] * len(SHOPPER), only_base)
    obj = codeswitch_object([shopper], hard_faq=None, third_party=None, controls={})
    assert set(obj) == KEYS
    assert obj["code_mixed_delta_r1"] is None and obj["code_mixed_delta_ci95"] is None
    assert obj["penalty"] == {"base": None, "shop": None, "shop_no_cs": None}
    assert set(obj["romanised"]) == {"n", *MODELS}
    assert obj["romanised"] == {"n": 1, "base": 0.0, "shop": None, "shop_no_cs": None}
    assert obj["hard_faq"] == {"n": None, "base": None, "shop": None, "shop_no_cs": None}
    assert obj["english_controls"] == {"base": None, "shop": None}
    assert obj["meta"]["faqs"] == ["shopper"] and obj["meta"]["query_mix"] is None


def test_a_faq_that_did_not_score_a_model_leaves_the_pool_null() -> None:
    # shop_no_cs scored on the shopper log only: pooling its shopper queries alone against
    # shop's two FAQs would compare two populations.
    shopper = _faq("shopper", SHOPPER, [None] * len(SHOPPER), SHOPPER_R1)
    hard = _faq("hard_faq", HARD, HARD_SCRIPTS, {"shop": HARD_R1["shop"]})
    obj = codeswitch_object([shopper, hard], hard_faq=hard, third_party=None, controls={})
    assert obj["code_mixed_delta_r1"] is None
    assert obj["hard_faq"]["shop"] == pytest.approx(0.5) and obj["hard_faq"]["base"] is None


def test_a_variant_gets_shops_figures_in_shops_place() -> None:
    # shop_lex_x: shop's shopper answers but for query 1 (code-mixed, now wrong); the unmerged
    # model and shop_no_cs are no variants.
    r1 = {**SHOPPER_R1, "shop_lex_x": [1, 0, 1, 0, 0], "shop_lex_x_unmerged": [1, 1, 1, 1, 1]}
    hard_r1 = {**HARD_R1, "shop_lex_x": [0, 1, 0, 1], "shop_lex_x_unmerged": [1, 1, 1, 1]}
    shopper = _faq("shopper", SHOPPER, [None] * len(SHOPPER), r1)
    hard = _faq("hard_faq", HARD, HARD_SCRIPTS, hard_r1)
    third = _penalty_results({**PENALTY_SETS, "shop_lex_x": PENALTY_SETS["base"]})
    controls = {"debian_en": {"shop_lex_x": {"r1": 0.5, "n": 10}}}
    obj = codeswitch_object(
        [shopper, hard], hard_faq=hard, third_party=third, controls=controls, n_boot=200
    )
    assert set(obj["variants"]) == {"shop_lex_x"}
    v = obj["variants"]["shop_lex_x"]
    # Code-mixed: shopper 1, 2, 3 -> 0, 1, 0; hard 0, 1, 3 -> 0, 1, 1: 3/6 against
    # shop_no_cs's 2/6.
    assert v["code_mixed_delta_r1"] == pytest.approx(1 / 6)
    assert len(v["code_mixed_delta_ci95"]) == 2
    assert v["penalty"] == pytest.approx(2 / 3)  # the base's cells
    assert v["romanised"] == pytest.approx(0.5)  # shopper 2: 1, hard 0: 0
    assert v["hard_faq"] == pytest.approx(0.5)
    assert v["english_controls"] == pytest.approx(0.5)
    # shop's own figures are untouched by the variant.
    assert obj["code_mixed_delta_r1"] == pytest.approx(2 / 6)


def test_romanised_by_field_tag_or_text(tmp_path: Path) -> None:
    assert is_romanised(_q("kya", "hi", "monolingual"), None)
    assert not is_romanised(_q("kya", "hi", "monolingual"), "deva")
    assert is_romanised(_q("क्या", "hi-Latn", "monolingual"), None)  # the tag says so
    assert not is_romanised(_q("commande", "fr", "monolingual"), "latn")
    assert not is_romanised(_q("123", "hi", "monolingual"), None)  # no letters at all
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "a", "script": "Latn"}\n\n{"query": "b"}\n', encoding="utf-8")
    assert read_scripts(path) == ["latn", None]
    with pytest.raises(ValueError, match="scripts"):
        FaqScores("x", SHOPPER, [None], {})
