"""One answer per topic, in the shopper's language.

A search over-fetches hits (`fetch_limit`), then `group_by_topic` keeps one entry per topic, so
that the top 3 are three different answers instead of one answer in three languages. Topics are
ranked by their best hit; within a topic the entry shown is the first that exists among:

1. the language the request asked for (`requested`),
2. the language the query is written in (`query`, from `index_builder.query_lang`),
3. English (`english`),
4. else the topic's best-scoring entry (`best`).

Each answer says which rule chose its language (`lang_reason`). The entry in the wanted
language may rank below the fetched hits, so a second search restricted to that language
(`language_to_fetch`) is merged in (`merge_hits`) when it can change the answers
(`needs_language_search`): the topics and their order do not change,
since any entry outside the first `fetch_limit` hits scores below every topic inside them.
With grouping off every hit is an answer of its own (`ranked`). The topic of a hit is its
payload's `topic` when it has one (`FaqItem.topic`), else `index_builder.faq.topic_of(id)`, the
one topic rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from index_builder.faq import topic_of

ENGLISH = "en"
# Hits fetched per answer asked for when grouping: room for a topic's translations (the sample
# FAQ has up to six entries a topic) without fetching the whole collection.
FETCH_FACTOR = 8
FETCH_MAX = 200

LangReason = Literal["requested", "query", "english", "best", "ranked"]
LANG_REASONS: tuple[LangReason, ...] = ("requested", "query", "english", "best", "ranked")


class RankedEntry(Protocol):
    """What grouping reads from a search hit (`index_builder.store.Hit` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def lang(self) -> str: ...

    @property
    def score(self) -> float: ...


H = TypeVar("H", bound=RankedEntry)


@dataclass(frozen=True)
class Answer(Generic[H]):
    """The entry shown for one topic, why it is in its language, and the topic's best score."""

    hit: H
    topic: str
    lang_reason: LangReason
    topic_score: float


def fetch_limit(top_k: int, *, group: bool) -> int:
    """How many hits to ask the index for, so that grouping can still fill `top_k` answers."""
    return max(top_k, min(top_k * FETCH_FACTOR, FETCH_MAX)) if group else top_k


def language_to_fetch(requested: str | None, detected: str | None) -> str | None:
    """The language whose entries are worth a second, language-filtered search: the one the
    answer should be in. Its entry of a topic may rank below the `fetch_limit` hits (a
    Spanish query about a topic whose German entry is asked for)."""
    return requested or (detected if detected != ENGLISH else None)


def needs_language_search(
    hits: Sequence[H],
    lang: str,
    top_k: int,
    limit: int,
    topic_languages: Mapping[str, frozenset[str]] | None = None,
) -> bool:
    """Whether a second search restricted to `lang` can change the answers grouped from `hits`
    (the first `limit` hits of the unrestricted search, best first).

    It cannot when the search was exhausted (fewer than `limit` hits: every entry is there), or
    when the first `top_k` topics of `hits` each already have an entry in `lang`: the entries a
    second search adds all score below every hit, so they add no topic ahead of those and no
    better entry in `lang` for them. A topic with no entry in `lang` in the whole index
    (`topic_languages`, when the index knows them) cannot get one either. Skipping it then
    changes no answer and saves a search.
    """
    if len(hits) < limit:
        return False
    covered: dict[str, bool] = {}
    for hit in sorted(hits, key=lambda h: -h.score):
        topic = hit_topic(hit)
        if topic not in covered and len(covered) == top_k:
            continue
        covered[topic] = (
            covered.get(topic, False)
            or hit.lang == lang
            or (topic_languages is not None and lang not in topic_languages.get(topic, ()))
        )
    return len(covered) < top_k or not all(covered.values())


def merge_hits(hits: Sequence[H], more: Sequence[H]) -> list[H]:
    """`hits` plus the entries of `more` not already in them, best score first."""
    seen = {h.id for h in hits}
    return sorted([*hits, *(h for h in more if h.id not in seen)], key=lambda h: -h.score)


def hit_topic(hit: RankedEntry) -> str:
    """The hit's topic: an explicit one from its payload, else the id's (`topic_of`)."""
    explicit = getattr(hit, "topic", None)
    return explicit if isinstance(explicit, str) and explicit else topic_of(hit.id)


def choose_entry(
    entries: Sequence[H], *, requested: str | None, detected: str | None
) -> tuple[H, LangReason]:
    """The entry of one topic to show, from `entries` ordered best score first."""
    if not entries:
        raise ValueError("a topic without entries")
    preferences: tuple[tuple[str | None, LangReason], ...] = (
        (requested, "requested"),
        (detected, "query"),
        (ENGLISH, "english"),
    )
    for lang, reason in preferences:
        for entry in entries:
            if lang is not None and entry.lang == lang:
                return entry, reason
    return entries[0], "best"


def group_by_topic(
    hits: Sequence[H],
    top_k: int,
    *,
    requested: str | None = None,
    detected: str | None = None,
    group: bool = True,
) -> list[Answer[H]]:
    """At most `top_k` answers from `hits` (best first), one per topic when `group`."""
    ordered = sorted(hits, key=lambda h: h.score, reverse=True)
    if not group:
        return [Answer(h, hit_topic(h), "ranked", h.score) for h in ordered[:top_k]]
    by_topic: dict[str, list[H]] = {}
    for hit in ordered:  # dicts keep insertion order: topics come out best first
        by_topic.setdefault(hit_topic(hit), []).append(hit)
    answers: list[Answer[H]] = []
    for topic, entries in list(by_topic.items())[:top_k]:
        entry, reason = choose_entry(entries, requested=requested, detected=detected)
        answers.append(Answer(entry, topic, reason, entries[0].score))
    return answers
