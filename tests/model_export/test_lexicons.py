"""Lexicon readers, in-domain sense ranking, phrase entries and romanisation, on small fixtures.

The fixtures are a few lines in each real format (Ding, EDICT in EUC-JP, CC-CEDICT gzipped,
Apertium's `lt-proc -b` stream), so the tests need neither the Debian packages nor the network.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from model_export.codeswitch import LanguageSwitcher
from model_export.dictionaries import Dictionary
from model_export.lexicon import clean, domain_sense_key
from model_export.lexicons.apertium import load_apertium, parse
from model_export.lexicons.cedict import load_cedict
from model_export.lexicons.ding import load_ding
from model_export.lexicons.edict import load_edict
from model_export.lexicons.loading import load_any
from model_export.lexicons.shop_text import ShopVocabulary, load_shop_text
from model_export.training.config import CodeSwitchConfig, LanguageDictionaries
from model_export.training.switching import load_tables

REPO = Path(__file__).resolve().parents[2]

DING = """\
# Version :: test
Bestellung {f}; Ordre {f} [ugs.] [econ.] | Bestellungen {pl} :: order | orders
Ordnung {f}; Befehl {m} :: order
Rückerstattung {f} [fin.] | eine Summe zurückerstatten :: refund | to refund a sum
Nachnahme {f}; Zahlung bei Lieferung; Postvorschuß {m} [veraltet] :: cash on delivery /COD/
Bargeld {n} :: cash
Lieferung {f} [transp.] :: delivery
Versand {m} [transp.] | Sendungsnummer {f} [transp.] :: shipping | tracking number
Auftrag {m}; Ordnung {f} | falsch :: order
"""

EDICT = """\
\u3000\uff1f\uff1f\uff1f /EDICT test file/
注文 [ちゅうもん] /(n,vs) (1) order/request/(2) wish/(P)/
オーダー /(n,vs) (1) order/reservation/(2) order/sequence/
返金 [へんきん] /(n,vs) repayment/refund/(P)/
追跡番号 [ついせきばんごう] /(n) tracking number/
"""

CEDICT = """\
# CC-CEDICT test
退款 退款 [tui4 kuan3] /to refund/refund/
訂單 订单 [ding4 dan1] /(purchase) order/CL:份[fen4]/
貨到付款 货到付款 [huo4 dao4 fu4 kuan3] /cash on delivery/
命令 命令 [ming4 ling4] /order/command/
"""


@pytest.fixture
def ding(tmp_path: Path) -> Path:
    path = tmp_path / "trans" / "de-en"
    path.parent.mkdir()
    path.write_text(DING, encoding="utf-8")
    return path


def test_ding_keeps_tagged_senses_and_their_tags(ding: Path) -> None:
    d = load_ding(ding)
    assert "Bestellung" in d.lookup("order")
    assert "econ" in d.tags_of("order", "Bestellung")
    # A register mark stays with its synonym; the subject field holds for the sub-entry.
    assert d.tags_of("order", "Ordre") >= {"ugs", "econ"}
    assert "ugs" not in d.tags_of("order", "Bestellung")
    assert d.lookup("refund") == ["Rückerstattung"]
    assert d.tags_of("refund", "Rückerstattung") == {"fin"}
    # Sub-entries pair by position; "to" of English verbs goes.
    assert d.lookup("orders") == ["Bestellungen"]
    assert d.lookup("tracking number") == ["Sendungsnummer"]
    assert d.lookup("refund a sum") == ["eine Summe zurückerstatten"]
    # A multi-word headword is one entry, not its words.
    assert d.lookup("cash on delivery")[:2] == ["Nachnahme", "Zahlung bei Lieferung"]
    assert "veraltet" in d.tags_of("cash on delivery", "Postvorschuß")
    assert "veraltet" not in d.tags_of("cash on delivery", "Nachnahme")
    back = load_ding(ding, direction="de-en")
    assert back.lookup("Bestellung") == ["order"]
    assert back.src_lang == "deu"


def test_ding_is_found_by_its_debian_path(ding: Path) -> None:
    assert load_any(ding, src_lang="en", tgt_lang="de").lookup("refund") == ["Rückerstattung"]


def test_edict_inverts_with_frequency_marks(tmp_path: Path) -> None:
    path = tmp_path / "edict"
    path.write_bytes(EDICT.encode("euc_jp"))
    d = load_edict(path)
    assert d.lookup("order")[:2] == ["注文", "オーダー"]
    assert d.tags_of("order", "注文") >= {"common", "sense1"}
    assert "common" not in d.tags_of("order", "オーダー")
    assert "sense1" not in d.tags_of("wish", "注文")  # the second sense
    assert d.lookup("refund") == ["返金"]
    assert d.lookup("tracking number") == ["追跡番号"]
    back = load_any(path, src_lang="ja", tgt_lang="en")
    assert "order" in back.lookup("注文")


def test_cedict_inverts_to_simplified(tmp_path: Path) -> None:
    path = tmp_path / "cedict_ts.u8.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(CEDICT)
    d = load_cedict(path)
    assert d.lookup("refund") == ["退款"]
    assert d.lookup("order") == ["订单", "命令"]
    assert d.lookup("cash on delivery") == ["货到付款"]
    assert not any(k.startswith("cl:") for k in d.entries)
    assert "sense1" in d.tags_of("order", "命令")


def test_apertium_stream_is_parsed_unknown_words_skipped() -> None:
    out = "^order<n>/orden<n><m>/pedido<n><m>$ ^order<vblex>/ordenar<vblex>$ ^xyz<n>/@xyz<n>$\n"
    d = parse(out, Dictionary("eng", "spa"))
    assert d.lookup("order") == ["orden", "pedido", "ordenar"]
    assert "xyz" not in d


APERTIUM_BIN = Path("/usr/share/apertium/apertium-eng-spa/eng-spa.autobil.bin")


@pytest.mark.skipif(
    not APERTIUM_BIN.is_file() or shutil.which("lt-proc") is None,
    reason="apertium-eng-spa and lttoolbox not installed (make shop-data installs them)",
)
def test_apertium_through_lt_proc() -> None:
    d = load_apertium(APERTIUM_BIN, vocabulary=["refund", "invoice", "qwxzy"])
    assert "reembolso" in d.lookup("refund")
    assert "factura" in d.lookup("invoice")
    assert "qwxzy" not in d


def _tsv(path: Path, rows: dict[str, list[str]]) -> str:
    path.write_text(
        "".join(f"{src}\t{'; '.join(tgts)}\n" for src, tgts in rows.items()), encoding="utf-8"
    )
    return str(path)


def _shop_file(path: Path, rows: list[dict[str, str]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def test_in_domain_sense_ranks_first_then_tags_then_frequency(tmp_path: Path) -> None:
    d = Dictionary("eng", "deu")
    for t in ("Befehl", "Auftrag", "Bestellung"):
        d.add("order", t, ("econ",) if t != "Befehl" else ())
    no_shop = domain_sense_key(d, in_domain=None, src_rank=None, tgt_rank=None)
    ranked, _ = clean(d, order=no_shop, max_translations=0)
    assert ranked.lookup("order")[0] == "Auftrag"  # tagged [econ.] before the untagged sense

    shop = ShopVocabulary.build("de", ["Wo ist meine Bestellung?"])
    with_shop = domain_sense_key(d, in_domain=shop.__contains__, src_rank=None, tgt_rank=None)
    ranked, _ = clean(d, order=with_shop, max_translations=1)
    assert ranked.lookup("order") == ["Bestellung"]


def test_training_tables_rank_the_shops_word_first(tmp_path: Path) -> None:
    # FreeDict-like order, no tags: "order" -> "Auftrag; Ordnung; Befehl; Bestellung".
    dictionary = _tsv(
        tmp_path / "en-de.tsv", {"order": ["Auftrag", "Ordnung", "Befehl", "Bestellung"]}
    )
    faq = _shop_file(
        tmp_path / "faq.jsonl",
        [{"id": "x.de", "lang": "de", "question": "Wo ist meine Bestellung?", "answer": "Hier."}],
    )
    cs = CodeSwitchConfig(
        languages=["de"],
        dictionaries={"de": LanguageDictionaries(from_en=[dictionary])},
        max_translations=1,
        rank_by_frequency=False,
    )
    assert load_tables(cs).tables[("de", "from_en")].dictionary.lookup("order") == ["Auftrag"]
    cs.shop_text = [faq]
    tables = load_tables(cs)
    assert tables.tables[("de", "from_en")].dictionary.lookup("order") == ["Bestellung"]
    # X->en: the shop's German word is a headword of the reversed table.
    assert tables.tables[("de", "to_en")].dictionary.lookup("Bestellung") == ["order"]


def test_shop_text_keeps_evaluation_queries_out(tmp_path: Path) -> None:
    # A shopper dev query pasted into a "train" file must not choose a sense.
    dev = json.loads((REPO / "data/shopper/dev.jsonl").read_text().splitlines()[0])
    train = json.loads((REPO / "data/shopper/train.jsonl").read_text().splitlines()[0])
    path = _shop_file(tmp_path / "train.jsonl", [dev, train])
    shop = load_shop_text([path])
    assert shop.guarded == 1
    assert shop.texts == {train["lang"]: [train["query"]]}


def test_unspaced_vocabulary_matches_substrings_of_two_characters() -> None:
    vocab = ShopVocabulary.build("ja", ["注文をキャンセルしたい"])
    assert "注文" in vocab
    assert "注" not in vocab  # one character occurs everywhere
    assert "返金" not in vocab


def test_phrase_entries_switch_as_one_unit(ding: Path) -> None:
    cs = CodeSwitchConfig(
        languages=["de"],
        dictionaries={"de": LanguageDictionaries(from_en=[str(ding)])},
        max_translations=1,
        rank_by_frequency=False,
        max_phrase_words=4,
    )
    tables = load_tables(cs)
    table = tables.tables[("de", "from_en")].dictionary
    assert table.lookup("cash on delivery") == ["Nachnahme"]
    switcher = LanguageSwitcher({}, tables.dictionaries("from_en"), rate=1.0)
    out = switcher.switch("can I pay cash on delivery with my tracking number", "en").text
    assert out == "can I pay Nachnahme with my Sendungsnummer"


def test_romanised_hindi_is_informal_latin() -> None:
    from model_export.romanise import romanise

    assert romanise("मेरा ऑर्डर कहाँ है? क्या मैं", "hi") == "mera ordar kaha hai? kya mai"
    assert romanise("पैसे वापस नहीं मिले, refund कब", "hi") == "paise vapas nahi mile, refund kab"
    assert romanise("আমার অর্ডার কোথায়", "bn") == "amar ardar kothay"


def test_romanised_dictionary_switches_hinglish(tmp_path: Path) -> None:
    dictionary = _tsv(tmp_path / "en-hi.tsv", {"money": ["पैसे"], "order": ["ऑर्डर"]})
    logs = _shop_file(
        tmp_path / "train.jsonl",
        [{"query": "mere paise kab milenge", "faq_id": "x", "lang": "hi", "kind": "code_mixed"}],
    )
    cs = CodeSwitchConfig(
        languages=["hi"],
        dictionaries={"hi": LanguageDictionaries(from_en=[dictionary])},
        romanise=["hi"],
        shop_text=[logs],
    )
    tables = load_tables(cs)
    assert tables.tables[("hi", "from_en")].dictionary.lookup("money") == ["paise"]
    switcher = LanguageSwitcher({}, tables.dictionaries("from_en"), rate=1.0)
    assert switcher.switch("where is my money", "en").text == "where is my paise"


def test_codeswitch_cli_previews_latin_hindi(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from model_export.cli import cli

    dictionary = _tsv(tmp_path / "en-hi.tsv", {"money": ["पैसे"], "refund": ["वापसी"]})
    config = tmp_path / "run.toml"
    config.write_text(
        'name = "t"\noutput_dir = "x"\n[codeswitch]\nlanguages = ["hi"]\npolicy = "rate"\n'
        f'[codeswitch.dictionaries.hi]\nfrom_en = ["{dictionary}"]\n'
    )
    args = ["codeswitch", "--lang", "hi", "--script", "latn", "--config", str(config)]
    result = CliRunner().invoke(cli, [*args, "--text", "मेरे पैसे कब मिलेंगे", "--rate", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "mere money kab milenge"
    english = ["--lang", "en", "--to", "hi", "--text", "where is my money", "--rate", "1"]
    result = CliRunner().invoke(
        cli, [*args[:3], *english[:], "--script", "latn", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "where is my paise"
