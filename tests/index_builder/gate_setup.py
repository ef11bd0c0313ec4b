"""The toy FAQ, the FakeEncoder and `faq-index build` of the quality gate tests
(`faq-index build --golden`, `faq-model golden`).

The encoder is the hashing `FakeEncoder` put in place of `OnnxEncoder.load` (texts sharing words
rank each other first), the index the embedded store in a temporary directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from app.index_cli import cli
from index_builder.model.encoder import OnnxEncoder
from tests.fakes import FakeEncoder

FAQ_ROWS = [
    ("order-cancel", "How do I cancel my order?", "en"),
    ("order-cancel.es", "¿Cómo cancelo mi pedido?", "es"),
    ("refund-time", "How long does a refund take?", "en"),
    ("refund-time.es", "¿Cuánto tarda el reembolso?", "es"),
    ("shipping-cost", "What does shipping cost to my country?", "en"),
    ("account-delete", "Can I delete my account and data?", "en"),
]


def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> FakeEncoder:
    """A FakeEncoder in place of `OnnxEncoder.load`, with no golden settings in the environment."""
    fake = FakeEncoder(dim=384)
    monkeypatch.setattr(OnnxEncoder, "load", classmethod(lambda cls, *a, **kw: fake))
    for name in ("FAQ_GOLDEN_QUERIES", "FAQ_GOLDEN_TOP_K"):
        monkeypatch.delenv(name, raising=False)
    return fake


def write_faq(tmp_path: Path) -> Path:
    path = tmp_path / "faq.jsonl"
    rows = [
        {"id": i, "question": q, "answer": f"answer {i}", "lang": lang} for i, q, lang in FAQ_ROWS
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def build(faq: Path, store_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    args = ["build", "--faq", str(faq), "--index-path", str(store_dir), *extra]
    return CliRunner().invoke(cli, args, env=env)
