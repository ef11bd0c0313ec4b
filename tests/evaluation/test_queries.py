"""Code-switched query generation: dictionary disjointness, determinism, checksums, guard fields."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from model_export.dictionaries import Dictionary, load_freedict
from model_export.eval_guard import EvalGuard, normalise
from model_export.evaluation.datasets import AlignedItem, Corpus, Entry
from model_export.evaluation.queries import (
    ChecksumError,
    EvalDictionaries,
    build_queries,
    evaluation_dictionaries,
    headword_casing,
    load_eval_dictionaries,
    load_eval_set,
    pair_set,
    write_eval_set,
)
from tests.evaluation.fixtures import write_dictd

# The reverse dictionary (German -> English) as the eval side, English -> German as training.
Dicts = tuple[Dictionary, Dictionary, dict[str, str]]
DEU_ENG = {
    "Bestellung": ["order", "ordering"],
    "Warenkorb": ["basket", "shopping cart"],
    "leer": ["empty", "vacant"],
    "Lieferung": ["delivery"],
    "nein": ["no"],
    "Danke nein": ["no"],
    "als": ["/\u02c8als/", "than"],  # IPA as the real deu-eng has it
    "mit": ["with"],
}
ENG_DEU = {"order": ["Bestellung"], "basket": ["Korb"], "with": ["mit"]}


@pytest.fixture
def dicts(tmp_path: Path) -> Dicts:
    rev = load_freedict(
        write_dictd(tmp_path, "freedict-deu-eng", DEU_ENG), src_lang="de", tgt_lang="en"
    )
    casing = headword_casing(tmp_path / "freedict-deu-eng.index")
    train = load_freedict(
        write_dictd(tmp_path, "freedict-eng-deu", ENG_DEU), src_lang="en", tgt_lang="de"
    )
    return rev, train, casing


def test_evaluation_dictionary_uses_primary_senses(dicts: Dicts) -> None:
    x_en, en_x, overlap = evaluation_dictionaries(dicts[0], dicts[1], casing=dicts[2])
    assert x_en.lookup("Bestellung") == ["order"]  # "ordering" is a secondary sense
    assert x_en.lookup("als") == ["than"]  # the IPA line is not a translation
    assert en_x.lookup("no") == ["nein", "Danke nein"]  # shortest first
    assert en_x.lookup("empty") == ["leer"]
    assert en_x.lookup("basket") == ["Warenkorb"]  # the noun keeps its capital
    # shared with training: (order, Bestellung) and (with, mit); (basket, Warenkorb) is not
    assert overlap == 2


def test_exclude_training_pairs_makes_the_dictionaries_disjoint(
    dicts: Dicts,
) -> None:
    rev, train, casing = dicts
    x_en, en_x, _ = evaluation_dictionaries(rev, train, exclude_training_pairs=True, casing=casing)
    train_pairs = pair_set(train)
    assert pair_set(en_x) and not (pair_set(en_x) & train_pairs)
    # target->English pairs, turned around, are not training pairs either
    assert not ({(e, x) for x, e in pair_set(x_en)} & train_pairs)
    assert en_x.lookup("order") == [] and en_x.lookup("basket") == ["Warenkorb"]


def test_eval_dictionaries_come_from_the_reverse_packages(tmp_path: Path) -> None:
    write_dictd(tmp_path, "freedict-deu-eng", DEU_ENG)
    write_dictd(tmp_path, "freedict-eng-deu", ENG_DEU)
    d = load_eval_dictionaries(["de"], tmp_path)
    assert d.sources["de"] == [str(tmp_path / "freedict-deu-eng.index")]
    with pytest.raises(FileNotFoundError, match="dict-freedict-fra-eng"):
        load_eval_dictionaries(["fr"], tmp_path)


def _corpus() -> Corpus:
    entries = [
        Entry("e1", "Your basket is empty. More text.", "Your basket is empty"),
        Entry("e2", "Track your order with us", "Track your order with us"),
        Entry("e3", "Contact support", "Contact support"),
    ]
    items = [
        AlignedItem("e1", "de", "Ihr Warenkorb ist leer", "Your basket is empty"),
        AlignedItem(
            "e2", "de", "Verfolgen Sie Ihre Bestellung mit uns", "Track your order with us"
        ),
        AlignedItem("e3", "de", "Kontakt", "Contact support"),
    ]
    return Corpus("shop", entries, items)


def _dictionaries(dicts: Dicts) -> EvalDictionaries:
    x_en, en_x, _ = evaluation_dictionaries(dicts[0], dicts[1], casing=dicts[2])
    return EvalDictionaries(to_en={"de": x_en}, from_en={"de": en_x})


def test_query_kinds_and_gold(dicts: Dicts) -> None:
    corpus = _corpus()
    qs = build_queries(corpus, _dictionaries(dicts), seed=1, rate=0.3)
    assert sorted(qs) == [
        ("de", "cs-en"),
        ("de", "cs-tgt"),
        ("de", "translated"),
        ("en", "english"),
    ]
    assert [q.query for q in qs[("en", "english")]] == [e.question for e in corpus.entries]
    assert [q.query for q in qs[("de", "translated")]] == [i.text for i in corpus.items]
    # "Kontakt" has no dictionary word: no code-switched version of it
    assert {q.gold for q in qs[("de", "cs-tgt")]} == {("e1",), ("e2",)}
    by_entry = {i.entry_id: i for i in corpus.items}
    for q in qs[("de", "cs-tgt")] + qs[("de", "cs-en")]:
        assert q.switched and q.query != q.base
        item = by_entry[q.gold[0]]
        assert q.base == (item.text if q.kind == "cs-tgt" else item.english)
        for src, tgt in q.switched:
            assert src in q.base and tgt in q.query


def test_generation_is_deterministic_and_order_independent(dicts: Dicts, tmp_path: Path) -> None:
    corpus = _corpus()
    d = _dictionaries(dicts)
    m1 = write_eval_set(tmp_path / "a", corpus, build_queries(corpus, d, seed=5))
    shuffled = Corpus(corpus.name, corpus.entries, list(reversed(corpus.items)))
    again = build_queries(shuffled, d, seed=5)
    first = build_queries(corpus, d, seed=5)
    for key, qs in first.items():
        assert {q.id: q for q in qs} == {q.id: q for q in again[key]}
    m2 = write_eval_set(tmp_path / "b", corpus, build_queries(corpus, d, seed=5))
    assert m1["checksum"] == m2["checksum"] and m1["files"] == m2["files"]
    other = write_eval_set(tmp_path / "c", corpus, build_queries(corpus, d, seed=6, rate=1.0))
    assert other["files"]["de/translated.jsonl"] == m1["files"]["de/translated.jsonl"]


def test_written_set_round_trips_and_detects_tampering(dicts: Dicts, tmp_path: Path) -> None:
    corpus = _corpus()
    queries = build_queries(corpus, _dictionaries(dicts), seed=2)
    manifest = write_eval_set(tmp_path, corpus, queries, meta={"seed": 2})
    loaded = load_eval_set(tmp_path / "shop")
    assert loaded.checksum == manifest["checksum"]
    assert loaded.entries == [(e.id, e.text) for e in corpus.entries]
    assert loaded.queries == {k: list(v) for k, v in queries.items()}
    assert manifest["counts"]["de/translated.jsonl"] == 3 and manifest["seed"] == 2
    path = tmp_path / "shop" / "de" / "translated.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace("leer", "voll"), encoding="utf-8")
    with pytest.raises(ChecksumError):
        load_eval_set(tmp_path / "shop")


def test_the_training_guard_sees_the_written_sets(dicts: Dicts, tmp_path: Path) -> None:
    corpus = _corpus()
    write_eval_set(tmp_path, corpus, build_queries(corpus, _dictionaries(dicts), seed=3))
    guard = EvalGuard.from_sources([tmp_path], debian_faq_dir=None)
    for text in [e.text for e in corpus.entries] + [i.text for i in corpus.items]:
        assert normalise(text) in guard.texts
    assert normalise(random.Random(0).choice(["not an eval text"])) not in guard.texts
