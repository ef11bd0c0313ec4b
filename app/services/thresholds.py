"""Which abstain threshold a search uses when its request sets none, and where it comes from.

In order: `FAQ_MIN_SCORE`; else the live collection's, picked for its FAQ when a reindex built
it (`index_builder.faq_calibration`, its metadata's `abstain`); else the served variant's
calibrated one (`faq-model calibrate`, the manifest); else none (always answer). `/info` shows
the one in force and its source.

A collection's threshold is used only with the rule it was picked with: the same off-topic
weight and anchors as the model's served rule and the same fusion weights. Otherwise (the model
recalibrated since, other FAQ_*_WEIGHT settings) its score would read another scale, and the
model's threshold serves, with one warning per collection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from index_builder.faq_calibration import CollectionCalibration, anchors_hash
from index_builder.manifest import AbstainCalibration
from index_builder.store import IndexInfo

log = logging.getLogger(__name__)

Source = Literal["FAQ_MIN_SCORE", "collection", "model", "none"]


@dataclass(frozen=True)
class Threshold:
    min_score: float | None
    source: Source
    # The collection whose threshold it is (source "collection").
    collection: str | None = None


class Thresholds:
    def __init__(
        self,
        model: AbstainCalibration | None,
        *,
        override: float | None = None,
        retrieval: str = "",
        use_collection: bool = True,
    ) -> None:
        self.model = model
        self.override = override
        self.retrieval = retrieval
        self.use_collection = use_collection
        self._anchors = anchors_hash(model.anchors) if model is not None else ""
        # Per (collection, created_at): its usable threshold or None. A version never changes
        # its record, so each is read (and warned about) once.
        self._seen: dict[tuple[str, str], float | None] = {}

    def for_index(self, index: IndexInfo | None) -> Threshold:
        if self.override is not None:
            return Threshold(self.override, "FAQ_MIN_SCORE")
        if index is not None and self.use_collection:
            key = (index.collection, index.created_at)
            if key not in self._seen:
                if len(self._seen) > 64:  # rollbacks and reindexes over a long uptime
                    self._seen.clear()
                self._seen[key] = self._usable(index)
            picked = self._seen[key]
            if picked is not None:
                return Threshold(picked, "collection", index.collection)
        if self.model is None:
            return Threshold(None, "none")
        return Threshold(self.model.min_score, "model")

    def _usable(self, index: IndexInfo) -> float | None:
        record = CollectionCalibration.from_meta(index.abstain)
        if record is None or self.model is None:
            return None
        why = ""
        if record.offtopic_weight != self.model.offtopic_weight:
            why = (
                f"off-topic weight {record.offtopic_weight} (served: {self.model.offtopic_weight})"
            )
        elif record.anchors_hash != self._anchors:
            why = "other off-topic anchors than the served rule's"
        elif record.retrieval != self.retrieval:
            why = f"fusion {record.retrieval} (served: {self.retrieval})"
        if why:
            log.warning(
                "the abstain threshold picked for %s was scored with %s: the model's serves; "
                "reindex to pick one for the served rule",
                index.collection,
                why,
            )
            return None
        return record.min_score
