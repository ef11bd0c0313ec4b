"""A reindex picks the abstain threshold for the FAQ it builds, the same way in the admin job
and in `faq-index build`: the served encoder and variant, the served rule's anchors and weight
(`served_calibration`), the served fusion weights (`index_builder.faq_calibration`)."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.config import Settings
from app.services.answering import served_calibration
from app.services.index_guard import retrieval
from index_builder.encoder import Encoder
from index_builder.faq import FaqItem
from index_builder.faq_calibration import annotator
from index_builder.store import Store
from index_builder.store.base import Annotate


def reindex_annotator(
    settings: Settings, encoder: Encoder, store: Store, items: Sequence[FaqItem]
) -> Annotate | None:
    """What a build of `items` into `store` records in its new collection's metadata (the
    threshold picked for them); None with FAQ_RECALIBRATE off or no calibrated model."""
    if not settings.recalibrate:
        return None
    return annotator(
        store,
        encoder,
        items,
        served_calibration(settings.model_dir, encoder.fingerprint, settings.model_variant),
        retrieval=retrieval(settings).describe(),
        offtopic_target=settings.recalibrate_offtopic_target,
    )
