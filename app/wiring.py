"""The one decision of where the index lives, made once from the settings.

- `SERVER`: `FAQ_QDRANT_URL` is set; every process talks to the Qdrant server (its own HNSW
  search, its own concurrency control).
- `EMBEDDED`: one process holds the embedded directory (qdrant-client local mode) and searches
  the live collection as one matrix (`index_builder.store.matrix`).
- `REPLICA`: several workers on the embedded directory; each serves an in-memory read-only
  replica, reloaded when a writer bumps the directory's generation (`app/services/replica.py`),
  and writes go to the directory itself under its lock.
"""

from __future__ import annotations

from enum import Enum

from app.core.config import Settings
from index_builder.store.fusion import Retrieval


class IndexMode(Enum):
    SERVER = "server"
    EMBEDDED = "embedded"
    REPLICA = "replica"


def index_mode(settings: Settings) -> IndexMode:
    if settings.qdrant_url:
        return IndexMode.SERVER
    return IndexMode.REPLICA if settings.workers > 1 else IndexMode.EMBEDDED


def matrix_search(settings: Settings) -> bool:
    """Whether embedded indexes search as one matrix (`FAQ_LOCAL_SEARCH=matrix`, the default)."""
    return settings.local_search == "matrix"


def retrieval(settings: Settings) -> Retrieval:
    """How searches fuse the question, answer and lexical parts (`FAQ_ANSWER_WEIGHT`,
    `FAQ_LEXICAL_WEIGHT`), for every index the service opens."""
    return Retrieval(answer_weight=settings.answer_weight, lexical_weight=settings.lexical_weight)


def lean_model_beside_search(settings: Settings) -> bool:
    """Whether model batches beside a large index's search run on one thread
    (`FAQ_LEAN_MODEL_BESIDE_SEARCH`; auto = the int8 variant)."""
    choice = settings.lean_model_beside_search
    return choice == "on" or (choice == "auto" and settings.model_variant == "int8")


def inline_search(settings: Settings) -> bool:
    """Whether /search runs on the event loop: an in-process index answers in microseconds to
    milliseconds; a server's round trips belong in the threadpool."""
    return index_mode(settings) is not IndexMode.SERVER
