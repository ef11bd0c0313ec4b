"""The code-mixed alignment loss: the right sides reach it, and it pulls towards both of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model_export.training.config import config_from_dict
from model_export.training.data import Pair, write_pairs
from model_export.training.losses import alignment_loss
from model_export.training.trainer import Batch, alignment_inputs, pool, train

SOURCES = ["faq:translation", "oscar"]
ES, EN = "dónde está mi pedido", "where is my order"
UNRELATED = "the quick brown fox jumps over the lazy dog"

# (pair, the query after switching, the languages its replacements came from)
ROWS = [
    # Spanish query switched es->en, its label the English sentence: both sources known.
    (Pair(ES, EN, "es", "oscar:es"), "dónde está mi order", frozenset({"en"})),
    # English query switched en->es towards its Spanish label.
    (
        Pair(
            "can i cancel the order", "puedo cancelar el pedido", "en", "oscar:es:rev", None, "es"
        ),
        "can i cancelar the order",
        frozenset({"es"}),
    ),
    # An English query switched towards a third language has no known target sentence.
    (
        Pair("refund please", "reembolso por favor", "en", "oscar:es:rev", None, "es"),
        "remboursement please",
        frozenset({"fr"}),
    ),
    # A shopper-log pair joins a query to its topic's question: a paraphrase, not a translation.
    (Pair("wo ist meine bestellung", EN, "de", "logs"), "wo ist meine order", frozenset({"en"})),
    # A translation that this step did not switch: there is no mixed text.
    (
        Pair("où est ma commande", EN, "fr", "faq:translation"),
        "où est ma commande",
        frozenset(),
    ),
    # FAQ question -> answer in one language.
    (Pair("¿dónde está?", "En camino", "es", "faq:answer", None, "es"), "¿dónde is?", frozenset()),
]


def _batch() -> Batch:
    return Batch(
        [r[0] for r in ROWS], [r[1] for r in ROWS], [r[0].label for r in ROWS], [r[2] for r in ROWS]
    )


def test_alignment_inputs_pick_the_mixed_rows_and_both_of_their_sources() -> None:
    got = alignment_inputs(_batch(), SOURCES)
    assert got.rows == [0, 1]
    # row 0: target = the Spanish query as written, english = its English label;
    # row 1: target = the Spanish label, english = the English query as written
    assert got.target == [ES, "puedo cancelar el pedido"]
    assert got.english == [EN, "can i cancel the order"]
    # nothing is aligned when the stage does not switch (no per-row switch record)
    plain = Batch([r[0] for r in ROWS], [r[0].query for r in ROWS], [r[0].label for r in ROWS])
    assert alignment_inputs(plain, SOURCES).rows == []
    # the shopper log's pairs are not translations unless the config says so
    assert alignment_inputs(_batch(), [*SOURCES, "logs"]).rows == [0, 1, 3]


def _embed(model_dir: Path, texts: list[str]) -> torch.Tensor:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    return pool(hidden, enc["attention_mask"], "mean")


def test_the_loss_is_fed_the_right_sides_with_the_tiny_model(tiny_bert_dir: Path) -> None:
    batch = _batch()
    got = alignment_inputs(batch, SOURCES)
    mixed = _embed(tiny_bert_dir, [batch.queries[i] for i in got.rows])
    loss, parts = alignment_loss(
        mixed, _embed(tiny_bert_dir, got.target), _embed(tiny_bert_dir, got.english)
    )
    # The value the right sides give, computed from the texts themselves.
    expected, _ = alignment_loss(
        mixed,
        _embed(tiny_bert_dir, [ES, "puedo cancelar el pedido"]),
        _embed(tiny_bert_dir, [EN, "can i cancel the order"]),
    )
    assert float(loss) == pytest.approx(float(expected), abs=1e-6)
    # Two different sources: fed the same text twice, the two sides would read the same.
    assert parts["align_target"] != pytest.approx(parts["align_english"], abs=1e-4)
    # A mixed text is nearer its own English sentence than an unrelated one.
    swapped, _ = alignment_loss(
        mixed, _embed(tiny_bert_dir, got.target), _embed(tiny_bert_dir, [UNRELATED] * 2)
    )
    assert float(loss) < float(swapped)


def test_the_gradient_pulls_towards_both_sources() -> None:
    # Mixed orthogonal to both sources: a step must raise its cosine with each of them.
    target, english = torch.eye(3)[[0]], torch.eye(3)[[1]]
    mixed = torch.eye(3)[[2]].clone().requires_grad_(True)
    loss, parts = alignment_loss(mixed, target, english)
    assert float(loss.detach()) == pytest.approx(1.0)
    assert parts == pytest.approx({"align_target": 1.0, "align_english": 1.0})
    loss.backward()  # type: ignore[no-untyped-call]
    assert mixed.grad is not None
    moved = (mixed - 0.1 * mixed.grad).detach()
    cos = torch.nn.functional.cosine_similarity
    assert float(cos(moved, target)) > 0.01
    assert float(cos(moved, english)) > 0.01
    assert float(cos(moved, target)) == pytest.approx(float(cos(moved, english)))
    # At the sources' normalised mean the two distances are equal and the gradient vanishes.
    middle = ((target + english) / 2).requires_grad_(True)
    alignment_loss(middle, target, english)[0].backward()  # type: ignore[no-untyped-call]
    assert middle.grad is not None
    assert float(middle.grad.norm()) < 1e-6
    with pytest.raises(ValueError, match="one shape"):
        alignment_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(1, 3))


def _run(tmp_path: Path, base: Path, name: str, weight: float) -> list[dict[str, float]]:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(
        [
            Pair(ES, EN, "es", "oscar:es"),
            Pair("puedo cancelar el pedido", "can i cancel the order", "es", "oscar:es"),
            Pair("reembolso por favor", "refund please", "es", "oscar:es"),
            Pair(EN, ES, "en", "oscar:es:rev", label_lang="es"),
            Pair("my order", "mi pedido", "en", "oscar:es:rev", label_lang="es"),
            Pair("cancel my order", "cancelar mi pedido", "en", "oscar:es:rev", label_lang="es"),
        ],
        pairs,
    )
    muse = tmp_path / "en-es.txt"
    muse.write_text("order pedido\ncancel cancelar\nrefund reembolso\nwhere dónde\nmy mi\n")
    cfg = config_from_dict(
        {
            "name": name,
            "output_dir": str(tmp_path / name),
            "seed": 5,
            "device": "cpu",
            "stages": ["finetune"],
            "checkpoint_every": 0,
            "log_every": 1,
            "dev_fraction": 0.0,
            "model": {"base_dir": str(base), "max_length": 32},
            "codeswitch": {
                "languages": ["es"],
                "dictionaries": {"es": {"from_en": [str(muse)]}},
                "rate": 1.0,
            },
            "data": {
                "train_files": [str(pairs)],
                "languages": ["en", "es"],
                "eval_dirs": [],
                "debian_faq_dir": "",
            },
            "finetune": {
                "align_weight": weight,
                "codeswitch": {"enabled": True, "switch_queries": True, "switch_labels": False},
                "optim": {"batch_size": 6, "epochs": 1, "max_steps": 2, "lr": 1e-3},
            },
        }
    )
    curve: list[dict[str, float]] = train(cfg, progress=False)["loss_curve"]
    return curve


def test_the_trainer_adds_the_term_only_with_a_weight(tmp_path: Path, tiny_bert_dir: Path) -> None:
    curve = _run(tmp_path, tiny_bert_dir, "align", 1.0)
    # every pair is a translation and rate 1.0 switches every one with a dictionary word
    assert all(c["align_rows"] == 6 for c in curve)
    assert all(c["align"] > 0 for c in curve)
    assert all(c["loss"] == pytest.approx(c["infonce"] + c["align"], rel=1e-5) for c in curve)
    # the trainer hands the loss two different sources, not one text twice
    assert all(c["align_target"] != pytest.approx(c["align_english"], abs=1e-5) for c in curve)
    off = _run(tmp_path, tiny_bert_dir, "no-align", 0.0)
    assert not any("align" in c or "align_rows" in c for c in off)


def test_the_trainer_pulls_the_switched_query_towards_fixed_sources(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mixed side is the switched query's embedding (the one the retrieval loss reads as
    its queries), with gradient; the two sources are targets, without. Fed the label's
    embedding instead, or sources with gradient, the term would pull the wrong texts."""
    from model_export.training import trainer

    seen: dict[str, Any] = {}
    real_nce, real_align = trainer.info_nce, trainer.alignment_loss

    def nce(q: torch.Tensor, d: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.setdefault("q", q.detach().clone())
        seen.setdefault("d", d.detach().clone())
        return real_nce(q, d, **kw)

    def align(
        mixed: torch.Tensor, target: torch.Tensor, english: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        seen.setdefault("mixed", mixed.detach().clone())
        seen.setdefault("grad", (mixed.requires_grad, target.requires_grad, english.requires_grad))
        return real_align(mixed, target, english)

    monkeypatch.setattr(trainer, "info_nce", nce)
    monkeypatch.setattr(trainer, "alignment_loss", align)
    curve = _run(tmp_path, tiny_bert_dir, "align-sides", 1.0)
    assert curve[0]["align_rows"] == 6  # every row aligned: mixed is q row for row
    assert torch.equal(seen["mixed"], seen["q"])
    assert not torch.allclose(seen["mixed"], seen["d"])
    assert seen["grad"] == (True, False, False)
