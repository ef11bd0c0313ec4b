from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_export.dictionaries import normalise_key
from model_export.segmentation import (
    WORD_RE,
    CjkSegmenter,
    RegexSegmenter,
    ThaiSegmenter,
    VietnameseSegmenter,
    segmenter_for,
    words,
)

THAI = "สถานะคำสั่งซื้อของฉันอยู่ที่ไหน"  # "where is my order status"


def vocab(*phrases: str) -> set[str]:
    # Callers pass dictionary keys, which are normalised: NFKC rewrites Thai SARA AM ("ำ"), so a
    # raw "คำสั่งซื้อ" would never be in a real vocabulary.
    return {normalise_key(p) for p in phrases}


def category(char: str) -> str:
    """The major Unicode category: L (letter), M (mark), N (number), ..."""
    return unicodedata.category(char)[0]


def starts_with_mark(word: str) -> bool:
    return category(word[0]) == "M"


def test_thai_words_keep_their_combining_marks() -> None:
    got = words(THAI, "th")
    assert "".join(got) == THAI  # no spaces or punctuation: every character is in a word
    assert not any(starts_with_mark(w) for w in got), got
    assert "สั่งซื้อ" in got or {"คำสั่ง", "ซื้อ"} <= set(got), got


def test_thai_pieces_rejoin_into_a_dictionary_word() -> None:
    got = words(THAI, "th", vocab("คำสั่งซื้อ"))
    assert "คำสั่งซื้อ" in got, got
    assert "".join(got) == THAI


def test_thai_mixed_with_latin_and_punctuation() -> None:
    assert words("ยกเลิก order นี้ ครับ!", "th") == ["ยกเลิก", "order", "นี้", "ครับ"]


def test_thai_piece_starting_with_a_mark_is_glued_to_its_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seg = ThaiSegmenter()
    # newmm cuts at Thai character clusters, so force the cut a weaker tokeniser could make.
    monkeypatch.setattr(seg, "_tokenize", lambda text, **_: ["ส", text[1:]])
    assert seg.spans("สั่ง") == [(0, 4)]


def test_thai_tokeniser_that_rewrites_text_falls_back_to_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seg = ThaiSegmenter()
    monkeypatch.setattr(seg, "_tokenize", lambda text, **_: ["x", "y"])
    assert seg.spans("สั่ง ซื้อ") == [(0, 4), (5, 9)]


def test_devanagari_vowel_signs_stay_in_words() -> None:
    assert words("मेरा ऑर्डर कहाँ है") == ["मेरा", "ऑर्डर", "कहाँ", "है"]
    assert words("मेरा ऑर्डर कहाँ है", "hi") == ["मेरा", "ऑर्डर", "कहाँ", "है"]


def test_latin_apostrophes_hyphens_and_punctuation() -> None:
    assert words("Don't e-mail me, please!") == ["Don't", "e-mail", "me", "please"]
    assert words("don\u2019t -x- 'quoted' a--b") == ["don\u2019t", "x", "quoted", "a", "b"]


def test_zero_width_joiners_stay_inside_words_only() -> None:
    # Persian "می‌خواهم" (I want): one word spelt with a ZWNJ; escaped because ruff flags the
    # Arabic letters as look-alikes of Latin ones.
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert words(f"{persian} \u200cabc\u200c") == [persian, "abc"]


@pytest.mark.parametrize("word", ["don't", "e-mail", "मेरा", "สั่งซื้อ", "a\u0301b", "x2"])
def test_word_re_matches_whole_words(word: str) -> None:
    assert WORD_RE.fullmatch(word)


@pytest.mark.parametrize("text", ["'s", "a-", "-a", "\u0301a", "a\u200c", "_"])
def test_word_re_rejects_edges_that_are_not_word_characters(text: str) -> None:
    assert not WORD_RE.fullmatch(text)


def test_a_mark_without_a_base_is_not_a_word() -> None:
    assert words("\u0301 a\u0301b \u0e31") == ["a\u0301b"]


def test_japanese_forward_maximum_matching() -> None:
    text = "注文をキャンセルしたい"
    assert words(text, "ja", vocab("注文", "キャンセル")) == ["注文", "を", "キャンセル", "したい"]
    # The longest entry wins over its prefix.
    assert words(text, "ja", vocab("注", "注文", "キャンセ")) == [
        "注文",
        "を",
        "キャンセ",
        "ルしたい",
    ]
    assert words(text, "ja") == [text]


def test_chinese_unmatched_characters_are_grouped() -> None:
    assert words("我的订单在哪里\uff1f", "zh", vocab("订单")) == ["我的", "订单", "在哪里"]


def test_cjk_latin_runs_use_the_regex() -> None:
    got = words("iPhoneを注文's、e-mail!", "ja", vocab("注文"))
    assert got == ["iPhone", "を", "注文", "s", "e-mail"]


def test_cjk_matches_normalised_forms_and_never_cuts_a_combining_mark() -> None:
    assert words("ｷｬﾝｾﾙする", "ja", vocab("キャンセル")) == ["ｷｬﾝｾﾙ", "する"]
    # "ガ" written as KA + combining dakuten: the match covers the mark with its base.
    assert words("カ\u3099ムを", "ja", vocab("ガ")) == ["カ\u3099", "ムを"]
    # A dictionary "カ" must not match the base of "カ\u3099" and leave the mark to start a word.
    assert words("カ\u3099ム", "ja", vocab("カ")) == ["カ\u3099ム"]


def test_cjk_match_length_is_bounded() -> None:
    assert words("ああああ", "ja", vocab("ああああ")) == ["ああああ"]
    seg = CjkSegmenter(max_chars=3)
    assert seg.spans("ああああ", vocab("ああああ")) == [(0, 4)]  # unmatched, one group


def test_vietnamese_syllables_join_into_dictionary_words() -> None:
    text = "đơn hàng của tôi ở đâu"
    seg = segmenter_for("vi")
    assert seg.spans(text, vocab("đơn hàng"))[0] == (0, 8)
    assert words(text, "vi", vocab("đơn hàng")) == ["đơn hàng", "của", "tôi", "ở", "đâu"]
    assert words(text, "vi") == ["đơn", "hàng", "của", "tôi", "ở", "đâu"]


def test_vietnamese_longest_phrase_and_its_limits() -> None:
    v = vocab("đơn", "đơn hàng", "đơn hàng của tôi")
    assert words("Đơn hàng của tôi", "vi", v) == ["Đơn hàng của tôi"]
    assert VietnameseSegmenter(max_syllables=3).spans("đơn hàng của tôi", v)[0] == (0, 8)
    # Punctuation ends a phrase; NFD input still matches the NFKC key.
    assert words("đơn, hàng", "vi", v) == ["đơn", "hàng"]
    assert words("đơn, hàng", "vi", vocab("đơn, hàng")) == ["đơn", "hàng"]
    nfd = unicodedata.normalize("NFD", "đơn hàng")
    assert words(nfd, "vi", v) == [nfd]


def test_segmenter_for_picks_by_primary_language_and_caches() -> None:
    assert isinstance(segmenter_for("th"), ThaiSegmenter)
    assert isinstance(segmenter_for("vi"), VietnameseSegmenter)
    assert isinstance(segmenter_for("ja"), CjkSegmenter)
    assert isinstance(segmenter_for("zh-Hant"), CjkSegmenter)
    for lang in ("en", "de", "hi", "ko", ""):
        assert isinstance(segmenter_for(lang), RegexSegmenter)
    assert segmenter_for("th") is segmenter_for("TH") is segmenter_for("th_TH")


# Drawn char by char from a list: `st.text(st.one_of(...))` merges the alphabets into one pool,
# where the few hand-picked scripts and marks would almost never come up next to each other.
_CHAR = st.one_of(
    st.sampled_from(list(" \t\n.,!?'\u2019-_\u200c\u200d、。")),
    st.sampled_from(list("aZé9" + "กขสั่ำุ้ไ๑" + "मेराँ्" + "注文をキャンセルー" + "ｷﾞ\u3099" + "đơà")),
    st.sampled_from(["\u0301", "\u0e31", "\u094d"]),  # marks with no base in front
    # Not Cn: `regex` ships newer Unicode tables than unicodedata, where some are letters.
    st.characters(codec="utf-8", exclude_categories=["Cn"]),
)


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(_CHAR, max_size=40).map("".join),
    lang=st.sampled_from(["en", "th", "vi", "ja"]),
    data=st.data(),
)
def test_spans_are_ordered_non_overlapping_words(text: str, lang: str, data: st.DataObject) -> None:
    # Vocabulary drawn from the text itself so that merging and matching actually happen.
    slices = st.tuples(st.integers(0, len(text)), st.integers(0, len(text)))
    chosen = data.draw(st.lists(slices, max_size=5))
    vocabulary = data.draw(
        st.sampled_from([None, {normalise_key(text[a:b]) for a, b in chosen} - {""}])
    )
    spans = segmenter_for(lang).spans(text, vocabulary)
    gaps = []
    pos = 0
    for start, end in spans:
        assert pos <= start < end <= len(text)
        gaps.append((pos, start))
        word = text[start:end]
        assert category(word[0]) in "LN", (text, spans)
        assert word == word.strip() and word[-1] not in "'\u2019-\u200c\u200d"
        pos = end
    gaps.append((pos, len(text)))
    for start, end in gaps:
        for i in range(start, end):
            assert category(text[i]) not in "LN", (text, spans)
            if category(text[i]) == "M":
                # A mark on a letter or digit (through any marks between) is in that word.
                base = i - 1
                while base >= 0 and category(text[base]) == "M":
                    base -= 1
                assert base < 0 or category(text[base]) not in "LN", (text, spans)
