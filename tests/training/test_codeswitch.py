from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_export.codeswitch import CodeSwitcher, LanguageSwitcher, match_case
from model_export.dictionaries import Dictionary
from model_export.segmentation import WORD_RE, segmenter_for


def _dict(lang: str, pairs: dict[str, str]) -> Dictionary:
    d = Dictionary("eng", lang)
    for k, v in pairs.items():
        d.add(k, v)
    return d


KNOWN = {"order": "pedido", "refund": "reembolso", "cancel": "cancelar", "where": "dónde"}
KNOWN_FR = {"order": "commande", "refund": "remboursement", "cancel": "annuler", "where": "où"}
UNKNOWN = ["parcel", "zebra", "my", "is", "the", "please"]
ES = _dict("es", KNOWN)
FR = _dict("fr", KNOWN_FR)

words = st.sampled_from(list(KNOWN) + UNKNOWN)
cased = st.tuples(words, st.sampled_from(["lower", "title", "upper"])).map(
    lambda t: {"lower": t[0], "title": t[0].title(), "upper": t[0].upper()}[t[1]]
)
seps = st.sampled_from([" ", ", ", "! ", " - ", "? ", "  "])
sentences = st.lists(st.tuples(cased, seps), min_size=1, max_size=25).map(
    lambda ws: "".join(w + s for w, s in ws).strip()
)


def _skeleton(text: str) -> list[str]:
    """Everything between words: must survive switching byte for byte."""
    return WORD_RE.split(text)


@settings(max_examples=200, deadline=None)
@given(sentences, st.integers(0, 10_000), st.sampled_from(["official", "rate"]))
def test_unknown_words_and_punctuation_never_change(text: str, seed: int, policy: str) -> None:
    cs = CodeSwitcher({"es": ES}, policy=policy, rate=0.5, seed=seed)  # type: ignore[arg-type]
    result = cs.switch(text)
    assert _skeleton(result.text) == _skeleton(text)
    src_words, out_words = WORD_RE.findall(text), WORD_RE.findall(result.text)
    assert len(src_words) == len(out_words)  # single-word translations here
    for a, b in zip(src_words, out_words, strict=True):
        if a.lower() not in KNOWN:
            assert a == b
        elif a != b:
            assert b.lower() == KNOWN[a.lower()]
            assert b == match_case(a, KNOWN[a.lower()])  # casing carried over


@settings(max_examples=200, deadline=None)
@given(sentences, st.integers(0, 10_000), st.floats(0.0, 1.0))
def test_rate_holds_per_sentence(text: str, seed: int, rate: float) -> None:
    cs = CodeSwitcher({"es": ES}, policy="rate", rate=rate, seed=seed)
    result = cs.switch(text)
    switchable = sum(w.lower() in KNOWN for w in WORD_RE.findall(text))
    assert result.switchable == switchable
    # stochastic rounding: k is floor or ceil of rate * switchable
    assert abs(len(result.replacements) - rate * switchable) < 1.0


def test_rate_holds_on_average() -> None:
    cs = CodeSwitcher({"es": ES}, policy="rate", rate=0.1, seed=7)
    text = "where is my order, can I cancel the order and get a refund"
    switched = sum(len(cs.switch(text, salt=i).replacements) for i in range(4000))
    # 5 switchable words per sentence; expected 0.5 per sentence
    assert switched / (4000 * 5) == pytest.approx(0.1, abs=0.01)


@settings(max_examples=100, deadline=None)
@given(sentences, st.integers(0, 10_000))
def test_same_seed_same_output_and_seed_matters(text: str, seed: int) -> None:
    a = CodeSwitcher({"es": ES, "fr": FR}, policy="official", seed=seed, mix="word")
    b = CodeSwitcher({"es": ES, "fr": FR}, policy="official", seed=seed, mix="word")
    assert a.switch(text, salt=3) == b.switch(text, salt=3)
    # order independence: visiting another sentence first changes nothing
    b.switch("where is my refund")
    assert a.switch(text, salt=3).text == b.switch(text, salt=3).text


def test_different_seeds_give_different_switches() -> None:
    text = " ".join(["order refund cancel where"] * 5)
    outs = {CodeSwitcher({"es": ES}, rate=0.5, seed=s).switch(text).text for s in range(10)}
    assert len(outs) > 1


def test_official_sampler_bound() -> None:
    text = "order refund cancel where order refund cancel where order"  # 9 words, all known
    counts = [
        len(CodeSwitcher({"es": ES}, policy="official", seed=s).switch(text).replacements)
        for s in range(300)
    ]
    # n ~ U[0, floor((9-1)/2)] = U[0, 4], every chosen word known
    assert min(counts) == 0 and max(counts) == 4
    assert set(counts) == {0, 1, 2, 3, 4}


def test_sentence_mix_uses_one_language_word_mix_several() -> None:
    text = " ".join(["order refund cancel where"] * 6)
    sent = CodeSwitcher({"es": ES, "fr": FR}, rate=1.0, mix="sentence", seed=1)
    word = CodeSwitcher({"es": ES, "fr": FR}, rate=1.0, mix="word", seed=1)
    for salt in range(20):
        assert len({r.lang for r in sent.switch(text, salt=salt).replacements}) == 1
    assert any(len({r.lang for r in word.switch(text, salt=s).replacements}) == 2 for s in range(5))


def test_multiword_phrase_replaced_as_one_unit() -> None:
    d = _dict("de", {"purchase order": "Kaufauftrag", "order": "Bestellung"})
    cs = CodeSwitcher({"de": d}, rate=1.0, seed=0)
    result = cs.switch("Where is my Purchase order?")
    assert result.text == "Where is my Kaufauftrag?"
    # a phrase does not span punctuation
    assert cs.switch("purchase, order").text == "purchase, Bestellung"


def test_casing_rules() -> None:
    assert match_case("ORDER", "pedido") == "PEDIDO"
    assert match_case("Order", "pedido") == "Pedido"
    assert match_case("order", "Bestellung") == "Bestellung"  # German noun keeps its capital
    cs = CodeSwitcher({"es": ES}, rate=1.0, seed=0)
    assert cs.switch("WHERE is my ORDER?").text == "DÓNDE is my PEDIDO?"


def test_rate_zero_changes_nothing() -> None:
    cs = CodeSwitcher({"es": ES}, rate=0.0, seed=0)
    text = "Where is my order? Cancel the refund."
    assert cs.switch(text).text == text
    assert re.search("pedido", CodeSwitcher({"es": ES}, rate=1.0).switch(text).text)


# --- the official sampler, exactly ------------------------------------------------------------


@pytest.mark.parametrize("n_words", [2, 4, 6])
def test_official_bound_is_floor_of_len_minus_one_over_two(n_words: int) -> None:
    # Even lengths tell floor((len-1)/2) from len//2: 2 words never switch, 4 at most 1.
    text = " ".join(["order", "refund"] * (n_words // 2))
    counts = {
        len(CodeSwitcher({"es": ES}, policy="official", seed=s).switch(text).replacements)
        for s in range(400)
    }
    assert max(counts) == (n_words - 1) // 2
    assert counts == set(range((n_words - 1) // 2 + 1))


def test_official_draws_among_all_words_and_unknown_chosen_words_stay() -> None:
    # One known word among 9: it is chosen with probability E[n]/9 = 2/9 (n ~ U[0, 4]).
    # Drawing among the known words only would switch it whenever n >= 1 (4/5 of sentences).
    text = "my parcel is the zebra please order my parcel"
    switched = sum(
        bool(CodeSwitcher({"es": ES}, policy="official", seed=s).switch(text).replacements)
        for s in range(2000)
    )
    assert switched / 2000 == pytest.approx(2 / 9, abs=0.04)


# --- script-aware words -----------------------------------------------------------------------


def test_devanagari_and_thai_words_are_switched_whole() -> None:
    hi = Dictionary("hi", "en")
    hi.add("ऑर्डर", "order")
    cs = CodeSwitcher({"en": hi}, rate=1.0, seed=0, segmenter=segmenter_for("hi"))
    assert cs.switch("मेरा ऑर्डर कहाँ है").text == "मेरा order कहाँ है"
    th = Dictionary("th", "en")
    th.add("คำสั่งซื้อ", "order")
    cs = CodeSwitcher({"en": th}, rate=1.0, seed=0, segmenter=segmenter_for("th"))
    result = cs.switch("สถานะคำสั่งซื้อของฉัน")
    assert [(r.source, r.target) for r in result.replacements] == [("คำสั่งซื้อ", "order")]
    assert result.text == "สถานะorderของฉัน"


# --- language-aware direction -----------------------------------------------------------------


def _language_switcher(**kw: object) -> LanguageSwitcher:
    de_en = Dictionary("de", "en")
    de_en.add("Bestellung", "order")
    de_en.add("Rückerstattung", "refund")
    en_de = Dictionary("en", "de")
    en_de.add("order", "Bestellung")
    en_de.add("refund", "Rückerstattung")
    return LanguageSwitcher({"de": de_en}, {"de": en_de, "es": ES}, rate=1.0, seed=0, **kw)  # type: ignore[arg-type]


def test_non_english_text_gets_english_words_and_english_text_target_words() -> None:
    sw = _language_switcher()
    de = sw.switch("Wo ist meine Bestellung und die Rückerstattung", "de")
    assert de.text == "Wo ist meine Order und die Refund"
    assert de.direction == "to_en"
    en = sw.switch("where is my order and the refund", "en", partner="de")
    assert en.text == "where is my Bestellung and the Rückerstattung"
    assert en.direction == "from_en"
    assert {r.lang for r in en.replacements} == {"de"}
    # English text goes towards the pair's other language when it has a dictionary
    assert sw.switch("my order", "en", partner="es").text == "my pedido"


def test_language_without_dictionary_passes_unchanged() -> None:
    sw = _language_switcher()
    result = sw.switch("Onde está o meu pedido", "pt")
    assert result.text == "Onde está o meu pedido"
    assert result.direction == "" and result.replacements == ()
