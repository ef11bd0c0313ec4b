from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_export.dictionaries import (
    Dictionary,
    coverage,
    decode_dictd_number,
    encode_dictd_number,
    load_dictionary,
    load_freedict,
    load_muse,
    load_tsv,
    merge,
)
from tests.training.dict_files import write_freedict, write_muse, write_tsv


@given(st.integers(min_value=0, max_value=2**40))
def test_dictd_numbers_round_trip(n: int) -> None:
    assert decode_dictd_number(encode_dictd_number(n)) == n


def test_dictd_number_known_digits() -> None:
    # "B" is 1 and "BA" is 64 in dictd's alphabet (A=0 ... / = 63)
    assert decode_dictd_number("B") == 1
    assert decode_dictd_number("BA") == 64
    with pytest.raises(ValueError):
        decode_dictd_number("!")


def test_freedict_reads_translations_not_examples(tmp_path: Path) -> None:
    d = load_freedict(write_freedict(tmp_path))
    assert (d.src_lang, d.tgt_lang) == ("eng", "deu")
    assert d.lookup("order") == ["Bestellung", "Auftrag"]
    assert d.lookup("cat") == ["Katze", "Kater"]  # numbered senses, annotations stripped
    assert d.lookup("purchase order") == ["Kaufauftrag"]  # multi-word headword kept
    assert d.max_phrase_words == 2
    # examples, synonyms and dictd metadata entries are not translations
    assert "00databaseinfo" not in d
    assert all("Auftrag erteilen" not in t for t in d.lookup("order"))


def test_casing_is_normalised_on_keys(tmp_path: Path) -> None:
    d = load_muse(write_muse(tmp_path), tgt_lang="fr")
    assert d.lookup("REFUND") == d.lookup("refund") == ["remboursement"]
    assert d.lookup("Order") == ["commande", "ordre"]


def test_tsv_multiword_and_alternatives(tmp_path: Path) -> None:
    d = load_tsv(write_tsv(tmp_path), tgt_lang="deu")
    assert d.lookup("refund") == ["Erstattung", "Rückzahlung"]
    assert d.lookup("Track  my parcel") == ["mein Paket verfolgen"]


def test_merge_unions_and_keeps_first_order(tmp_path: Path) -> None:
    fd = load_freedict(write_freedict(tmp_path))
    tsv = load_tsv(write_tsv(tmp_path), src_lang="eng", tgt_lang="deu")
    merged = merge([fd, tsv])
    assert merged.lookup("refund") == ["Rückerstattung", "Erstattung", "Rückzahlung"]
    assert "track my parcel" in merged and "cat" in merged
    assert len(merged) == len(set(fd.entries) | set(tsv.entries))
    with pytest.raises(ValueError):
        merge([fd, Dictionary("eng", "fra")])


def test_auto_format_by_name(tmp_path: Path) -> None:
    assert load_dictionary(write_freedict(tmp_path)).lookup("cat")
    assert load_dictionary(write_tsv(tmp_path), tgt_lang="deu").lookup("refund")
    assert load_dictionary(write_muse(tmp_path), tgt_lang="fr").lookup("cat") == ["chat"]


def test_coverage_counts_words_and_phrases(tmp_path: Path) -> None:
    d = load_freedict(write_freedict(tmp_path))
    report = coverage(d, ["My purchase order, my cat!", "where is my cat"])
    # words: my purchase order my cat | where is my cat -> 9 tokens; covered: purchase order cat cat
    assert report.tokens == 9
    assert report.covered_tokens == 4
    assert report.types == 6  # my purchase order cat where is
    assert report.covered_types == 3
    assert report.top_missing[0] == ("my", 3)
    assert report.token_coverage == pytest.approx(4 / 9)
