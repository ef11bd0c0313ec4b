"""Cluster layout of new collections (shard_number, replication_factor, write_consistency_factor):
read from settings and the CLI, handed to a Qdrant server; the embedded store has none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from app.core.config import Settings
from app.index_cli import cli
from app.services.index_guard import open_settings_store
from index_builder.faq import FaqItem
from index_builder.store import CollectionLayout, EmbeddedStore, QdrantStore, open_store
from tests.fakes import FakeEncoder

ITEMS = [
    FaqItem(id="order-cancel", question="How do I cancel my order?", answer="a", lang="en"),
    FaqItem(id="refund", question="When do I get my refund?", answer="b", lang="en"),
]


class _Recording(QdrantClient):
    """An in-memory client that remembers what each new collection was asked to be."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.created: list[dict[str, Any]] = []

    def create_collection(self, collection_name: str, **kwargs: Any) -> bool:  # type: ignore[override]
        self.created.append(kwargs)
        return super().create_collection(collection_name, **kwargs)


def _layout_of(created: dict[str, Any]) -> tuple[object, object, object]:
    return (
        created.get("shard_number"),
        created.get("replication_factor"),
        created.get("write_consistency_factor"),
    )


def test_a_server_gets_the_layout() -> None:
    client = _Recording()
    store = QdrantStore(client, layout=CollectionLayout(3, 2, 2))
    store.build(ITEMS, FakeEncoder(), progress=False)
    assert [_layout_of(c) for c in client.created] == [(3, 2, 2)]
    store.build(ITEMS, FakeEncoder(), progress=False)
    assert [_layout_of(c) for c in client.created] == [(3, 2, 2)] * 2
    # Without one: a single node.
    plain = _Recording()
    QdrantStore(plain).build(ITEMS, FakeEncoder(), progress=False)
    assert [_layout_of(c) for c in plain.created] == [(1, 1, 1)]


def test_the_embedded_store_is_opened_without_a_url(tmp_path: Path) -> None:
    store = open_store(path=tmp_path / "index", layout=CollectionLayout(3, 2, 1), keep=2)
    assert isinstance(store, EmbeddedStore) and store.keep == 2
    assert store.root == tmp_path / "index"
    with pytest.raises(ValueError, match="URL or a local data path"):
        open_store()


def test_write_consistency_above_replication_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds replication_factor"):
        CollectionLayout(shard_number=2, replication_factor=1, write_consistency_factor=2)
    with pytest.raises(ValidationError, match="exceeds replication_factor"):
        Settings(replication_factor=2, write_consistency_factor=3)


def test_the_service_builds_with_the_settings_layout(tmp_path: Path) -> None:
    settings = Settings(
        qdrant_url="http://127.0.0.1:1",
        index_path=tmp_path / "index",
        shard_number=4,
        replication_factor=2,
        write_consistency_factor=2,
    )
    store = open_settings_store(settings)
    assert isinstance(store, QdrantStore) and store.layout == CollectionLayout(4, 2, 2)
    embedded = open_settings_store(settings.model_copy(update={"qdrant_url": None}))
    assert isinstance(embedded, EmbeddedStore) and embedded.root == tmp_path / "index"


def test_cli_reads_the_layout_from_the_environment(tmp_path: Path) -> None:
    # Refused before anything is read or loaded: the FAQ file and the model do not exist.
    env = {"FAQ_REPLICATION_FACTOR": "1", "FAQ_WRITE_CONSISTENCY_FACTOR": "2"}
    args = ["build", "--faq", str(tmp_path / "none.jsonl"), "--index-path", str(tmp_path / "q")]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert "exceeds replication_factor" in result.output
