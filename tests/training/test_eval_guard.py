from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import pytest

from model_export.eval_guard import EvalGuard, EvalLeakError, normalise
from model_export.training.data import Pair


def _eval_dir(tmp_path: Path) -> Path:
    d = tmp_path / "eval" / "cs-queries"
    d.mkdir(parents=True)
    rows = [
        {"query": "Wo ist meine   BESTELLUNG?", "label_id": "q1"},
        {"text": "how do I get a refund"},
        {"question": "Can I change my address?"},
        {"other": "not an evaluation text"},
    ]
    (d / "de.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path / "eval"


def _faq_dir(tmp_path: Path) -> Path:
    d = tmp_path / "FAQ"
    d.mkdir()
    (d / "basic-defs.en.html").write_text(
        '<h2 class="title"><a id="x"></a>1.1. What is this FAQ?</h2><p>Body text.</p>'
    )
    return d


def test_normalise() -> None:
    assert normalise("  query: Wo ist\tmeine BESTELLUNG? ") == "wo ist meine bestellung"
    assert normalise("¿Dónde está mi pedido?") == "dónde está mi pedido"
    thai = "สถานะคำสั่งซื้อ"  # combining vowel and tone marks are not punctuation
    assert normalise(thai) == unicodedata.normalize("NFKC", thai)


def test_guard_catches_near_duplicates_of_cleaned_eval_strings(tmp_path: Path) -> None:
    """The eval builders clean gettext strings that training keeps raw; both must collide."""
    d = tmp_path / "eval"
    d.mkdir()
    rows = [{"text": "Is public?"}, {"text": "' ' has been added to your basket"}]
    (d / "entries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    guard = EvalGuard.from_sources([d], debian_faq_dir=None, mode="drop")
    pairs = [
        Pair(query="Ist öffentlich", label="Is public"),
        Pair(
            query="'%(title)s' wurde hinzugefügt", label="'%(title)s' has been added to your basket"
        ),
        Pair(query="Lieferadresse", label="Delivery address"),
    ]
    kept, dropped = guard.filter(pairs)
    assert dropped == 2 and [p.label for p in kept] == ["Delivery address"]


def test_guard_raises_on_leak(tmp_path: Path) -> None:
    guard = EvalGuard.from_sources([_eval_dir(tmp_path)], debian_faq_dir=_faq_dir(tmp_path))
    clean = [Pair("where is my parcel", "Where is my order?")]
    assert guard.filter(clean) == (clean, 0)
    leaking = [*clean, Pair("wo ist meine bestellung?", "Where is my order?", lang="de")]
    with pytest.raises(EvalLeakError, match="1 training pairs"):
        guard.filter(leaking)


def test_guard_drops_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    guard = EvalGuard.from_sources(
        [_eval_dir(tmp_path)], debian_faq_dir=_faq_dir(tmp_path), mode="drop"
    )
    pairs = [
        Pair("passage: HOW do I get a refund", "x"),  # query matches a `text` row
        Pair("something", "what is this faq?"),  # label matches a Debian FAQ heading
        # Punctuation does not make another text: the eval builders clean what training keeps.
        Pair("Can I change my address", "x"),
        Pair("not an evaluation text", "fine"),  # other fields are not evaluation text
    ]
    with caplog.at_level(logging.WARNING):
        kept, dropped = guard.filter(pairs)
    assert dropped == 3
    assert kept == pairs[3:]
    assert "dropped 3 of 4" in caplog.text


def test_guard_without_sources_accepts_everything(tmp_path: Path) -> None:
    guard = EvalGuard.from_sources(
        [tmp_path / "missing"],
        debian_faq_dir=None,
        shopper_dir=tmp_path / "missing",
        hard_faq_dir=tmp_path / "missing",
        gaps_dir=tmp_path / "missing",
    )
    assert guard.texts == frozenset()
    assert guard.filter([Pair("a", "b")])[1] == 0
