"""Dataset builders on small files in the real formats: counts, alignment, no wrong matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_export.evaluation.datasets import (
    AlignedItem,
    Corpus,
    Entry,
    debian_faq,
    oscar_heldout,
    oscar_strings,
    parse_faq_html,
)
from model_export.training.data import oscar_pairs
from tests.evaluation.fixtures import (
    FAQ_DE,
    FAQ_EN,
    OSCAR_DE,
    OSCAR_FR,
    write_debian_faq,
    write_oscar_wheel,
)


def test_parse_faq_html_strips_numbers_and_markup() -> None:
    html = (
        '<h2 class="title"><a id="a1"></a>2.1. What is <code>apt</code>?</h2><p>A tool &amp; more.'
        '</p><h3><a id="a2"></a>2.1.1. And\n dpkg?</h3><p>Lower level.</p><h2>No anchor</h2>'
    )
    sections = parse_faq_html(html)
    assert [(s.anchor, s.question, s.answer) for s in sections] == [
        ("a1", "What is apt ?", "A tool & more."),
        ("a2", "And dpkg?", "Lower level."),  # stops at the next heading
    ]


def test_debian_faq_counts_and_alignment(tmp_path: Path) -> None:
    corpus = debian_faq(write_debian_faq(tmp_path), ["de", "fr"])
    assert [e.id for e in corpus.entries] == ["basic#kernel", "basic#pronounce", "basic#whatis"]
    # de: the untranslated heading and the German-only section are left out
    de = {i.entry_id: i.text for i in corpus.items_for("de")}
    assert de == {
        "basic#whatis": "Was ist diese FAQ?",
        "basic#pronounce": "Wie spricht man Debian aus?",
    }
    assert [i.entry_id for i in corpus.items_for("fr")] == ["basic#pronounce"]
    by_id = {e.id: e for e in corpus.entries}
    en_by_anchor = {a: q for a, q, _ in FAQ_EN}
    for item in corpus.items:
        # the gold entry is the English section with the same anchor, nothing else
        assert by_id[item.entry_id].question == en_by_anchor[item.entry_id.split("#")[1]]
        assert item.english == by_id[item.entry_id].question
    de_src = {a: q for a, q, _ in FAQ_DE}
    assert all(de_src[i.entry_id.split("#")[1]] == i.text for i in corpus.items_for("de"))


def test_debian_entry_text_modes(tmp_path: Path) -> None:
    root = write_debian_faq(tmp_path)
    qa = {e.id: e.text for e in debian_faq(root, ["de"]).entries}
    q = {e.id: e.text for e in debian_faq(root, ["de"], entry_text="question").entries}
    assert q["basic#whatis"] == "What is this FAQ?"
    assert qa["basic#whatis"] == "What is this FAQ? A list of questions & answers."
    with pytest.raises(ValueError):
        debian_faq(root, ["de"], entry_text="answer")


def test_debian_faq_missing_language_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="debian-faq-it"):
        debian_faq(write_debian_faq(tmp_path), ["it"])


def test_oscar_counts_alignment_and_ambiguity(tmp_path: Path) -> None:
    wheel = write_oscar_wheel(tmp_path / "django_oscar-0-py3-none-any.whl")
    corpus = oscar_strings(wheel, {"de": "de", "fr": "fr"}, heldout_only=False)
    # both locales, not fuzzy, >= 2 words: 6 strings; "Only German" has no French
    english = [e.question for e in corpus.entries]
    assert sorted(english) == sorted(
        [
            "Your basket is empty",
            "Add to basket",
            "Place order",
            "Order placed",
            "Remove item",
            "Delete item",
        ]
    )
    assert len({e.id for e in corpus.entries}) == len(corpus.entries)
    # "Entfernen" translates two entries in German: dropped there, kept in French
    assert len(corpus.items_for("de")) == 4
    assert len(corpus.items_for("fr")) == 6
    de_src = {en: xx for en, xx in OSCAR_DE}
    fr_src = {en: xx for en, xx in OSCAR_FR}
    by_id = {e.id: e for e in corpus.entries}
    for item in corpus.items:
        entry = by_id[item.entry_id]
        assert entry.text == entry.question == item.english
        src = de_src if item.lang == "de" else fr_src
        raw_en = next(k for k in src if k.replace("%(number)s ", "") == entry.question)
        assert item.text.replace("  ", " ") == src[raw_en].replace("%(number)s ", "")


def test_oscar_texts_match_the_training_pairs(tmp_path: Path) -> None:
    """The eval guard matches exact normalised text, so both builders must clean alike."""
    wheel = write_oscar_wheel(tmp_path / "w.whl")
    corpus = oscar_strings(wheel, {"de": "de", "fr": "fr"}, heldout_only=False)
    labels = {p.label for p in oscar_pairs(wheel, ["de", "fr"])}
    assert {e.text for e in corpus.entries} <= labels


def test_oscar_heldout_split_is_stable_and_about_a_third() -> None:
    texts = [f"string number {i}" for i in range(3000)]
    held = [t for t in texts if oscar_heldout(t)]
    assert 900 < len(held) < 1100
    assert held == [t for t in texts if oscar_heldout(t)]
    assert oscar_heldout("Add To Basket") == oscar_heldout("add to  basket")


def test_oscar_cap_keeps_entries_and_items_consistent(tmp_path: Path) -> None:
    wheel = write_oscar_wheel(tmp_path / "w.whl")
    corpus = oscar_strings(wheel, {"de": "de", "fr": "fr"}, heldout_only=False, max_entries=3)
    assert len(corpus.entries) == 3
    ids = {e.id for e in corpus.entries}
    assert all(i.entry_id in ids for i in corpus.items)


def test_corpus_check_catches_misalignment() -> None:
    entries = [Entry("a", "A text", "A?"), Entry("b", "B text", "B?")]
    Corpus("t", entries, [AlignedItem("a", "de", "A-de", "A?")]).check()
    with pytest.raises(ValueError, match="wrong entry"):
        Corpus("t", entries, [AlignedItem("a", "de", "B-de", "B?")]).check()
    with pytest.raises(ValueError, match="no entry"):
        Corpus("t", entries, [AlignedItem("c", "de", "C-de", "C?")]).check()
