"""Training pairs from a shop's own FAQ, and hard negatives mined with the base model.

* `faq_task_pairs`: each entry's question -> its answer (the answer carries the exact tokens a
  shopper types and the question lacks: "PayPal", courier names), and each translated question
  -> the topic's English question (question <-> translation). Every pair names its topic.
* `mine_negatives`: for each pair with a topic, the FAQ question of *another* topic that the base
  model ranks highest for the query: the confusions the fine-tuning has to fix
  ("shipping-delayed" vs "shipping-lost-parcel"). Encoding goes through the exported ONNX model
  and `index_builder`'s encoder, so the negatives are the ones the served base model confuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from model_export.training.data import Pair
from model_export.training.logs import read_faq, topic_labels


def faq_task_pairs(faq_path: str | Path) -> list[Pair]:
    entries = read_faq(faq_path)
    labels = topic_labels(entries)
    pairs: list[Pair] = []
    for e in entries.values():
        if e.answer:
            pairs.append(
                Pair(e.question, e.answer, e.lang, "faq:answer", label_lang=e.lang, topic=e.topic)
            )
        english = labels[e.topic]
        if e.lang != english.lang:
            pairs.append(
                Pair(
                    e.question,
                    english.question,
                    e.lang,
                    "faq:translation",
                    label_lang=english.lang,
                    topic=e.topic,
                )
            )
    return pairs


def mine_negatives(
    pairs: Sequence[Pair], faq_path: str | Path, model_dir: str | Path, *, batch: int = 64
) -> tuple[list[Pair], int]:
    """Pairs with `negative` set to the base model's top FAQ question of another topic.

    Pairs without a topic (general bitext) are returned unchanged. Returns the pairs and how
    many got a negative.
    """
    from index_builder.model.encoder import OnnxEncoder

    labels = topic_labels(read_faq(faq_path))
    topics = sorted(labels)
    questions = [labels[t].question for t in topics]
    encoder = OnnxEncoder.load(Path(model_dir))
    try:
        cand = np.asarray(encoder.encode_passages(questions), dtype=np.float32)
        todo = [i for i, p in enumerate(pairs) if p.topic is not None and p.topic in labels]
        out = list(pairs)
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            q = np.asarray(encoder.encode_queries([pairs[i].query for i in idx]), dtype=np.float32)
            scores = q @ cand.T
            for row, i in enumerate(idx):
                order = np.argsort(-scores[row], kind="stable")
                best = next(int(j) for j in order if topics[int(j)] != pairs[i].topic)
                out[i] = replace(pairs[i], negative=questions[best])
    finally:
        encoder.close()
    return out, len(todo)
