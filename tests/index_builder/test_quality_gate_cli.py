"""`faq-index build --golden`: the quality gate on the command line (`gate_setup`: the data;
`faq-model golden` draws golden files: tests/model_export/test_golden.py).

The encoder is the hashing `FakeEncoder` put in place of `OnnxEncoder.load` (texts sharing words
rank each other first), the index the embedded store in a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from index_builder.store import EmbeddedStore
from tests.fakes import FakeEncoder
from tests.index_builder.gate_setup import build, fake_encoder, write_faq, write_json


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> FakeEncoder:
    return fake_encoder(monkeypatch)


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    return write_faq(tmp_path)


def state(store_dir: Path) -> tuple[str | None, list[str]]:
    """(alias target, versioned collections) of the embedded directory."""
    index = EmbeddedStore(store_dir)
    try:
        return index.current_collection(), [name for _, name in index.versions()]
    finally:
        index.close()


PASSING = [
    {"query": "cancel my order", "expected_id": "order-cancel", "top_k": 1},
    # Only the Spanish entry shares words with it: "topic" accepts a translation.
    {"query": "cancelo mi pedido", "expected_id": "order-cancel", "match": "topic", "top_k": 1},
]
FAILING = {"query": "how long does a refund take", "expected_id": "shipping-cost", "top_k": 2}


# --- faq-index build --golden -------------------------------------------------------------------


def test_gate_pass_moves_the_alias(tmp_path: Path, faq: Path, encoder: FakeEncoder) -> None:
    store_dir = tmp_path / "q"
    assert build(faq, store_dir).exit_code == 0
    golden = write_json(tmp_path / "golden.json", PASSING)
    # From the environment, like the service's settings of the same names.
    env = {"FAQ_GOLDEN_QUERIES": str(golden), "FAQ_GOLDEN_TOP_K": "3"}
    result = build(faq, store_dir, "--force", env=env)
    assert result.exit_code == 0, result.output
    assert "quality gate: 2/2 golden queries passed" in result.output
    assert state(store_dir) == ("faq_v2", ["faq_v1", "faq_v2"])


def test_gate_failure_exits_3_and_leaves_the_alias(
    tmp_path: Path, faq: Path, encoder: FakeEncoder
) -> None:
    store_dir = tmp_path / "q"
    assert build(faq, store_dir).exit_code == 0
    golden = write_json(tmp_path / "golden.json", [*PASSING, FAILING])
    result = build(faq, store_dir, "--force", "--golden", str(golden))
    assert result.exit_code == 3, result.output
    assert "1 of 3 golden queries failed on faq_v2" in result.output
    assert "stays on faq_v1" in result.output
    # Which query, what it expected, what it got instead.
    assert "'how long does a refund take': expected shipping-cost in top 2, got refund-time" in (
        result.output
    )
    assert state(store_dir) == ("faq_v1", ["faq_v1"])

    # Nothing to build (same FAQ, same model): the gate judges the live collection instead.
    result = build(faq, store_dir, "--golden", str(golden))
    assert result.exit_code == 3, result.output
    assert "the live faq_v1 fails 1 of 3" in result.output
    assert state(store_dir) == ("faq_v1", ["faq_v1"])


def test_bad_golden_file_exits_2_naming_file_and_entry(
    tmp_path: Path, faq: Path, encoder: FakeEncoder
) -> None:
    store_dir = tmp_path / "q"
    golden = write_json(tmp_path / "golden.json", [PASSING[0], {"query": "no expected id"}])
    result = build(faq, store_dir, "--golden", str(golden))
    assert result.exit_code == 2, result.output
    assert f"{golden} entry 2: expected_id: Field required" in result.output
    assert "Traceback" not in result.output
    assert state(store_dir) == (None, [])  # refused before anything was built

    topic_with_suffix = {**PASSING[1], "expected_id": "order-cancel.es"}
    write_json(golden, [topic_with_suffix])
    result = build(faq, store_dir, "--golden", str(golden))
    assert result.exit_code == 2 and "entry 1" in result.output and "not a topic" in result.output


def test_keep_reads_its_faq_setting(encoder: FakeEncoder, faq: Path, tmp_path: Path) -> None:
    # The README says every CLI reads the FAQ_ settings: FAQ_KEEP_COLLECTIONS prunes here too.
    store_dir = tmp_path / "store_dir"
    env = {"FAQ_KEEP_COLLECTIONS": "1"}
    assert build(faq, store_dir, env=env).exit_code == 0
    assert build(faq, store_dir, "--force", env=env).exit_code == 0
    alias_target, versions = state(store_dir)
    assert versions == [alias_target]
    bad = build(faq, store_dir, "--force", env={"FAQ_KEEP_COLLECTIONS": "0"})
    assert bad.exit_code == 2
