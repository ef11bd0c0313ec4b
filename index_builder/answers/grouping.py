"""One answer per topic, in the shopper's language.

A search over-fetches hits (`fetch_limit`) and `group_by_topic` keeps one entry per topic, ranked
by its best hit, in the first language the topic has among: the requested one, the query's, and
English; else its best-scoring entry. `lang_reason` says which. An entry in a wanted language
below the fetched hits comes from the index's own `Lookup` in process, or from searches
restricted to those languages against a server (`languages_to_fetch`, `merge_hits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from index_builder.faq import topic_of

ENGLISH = "en"
# Hits fetched per answer when grouping: room for a topic's translations (up to six a topic in
# the sample FAQ) without fetching the whole collection.
FETCH_FACTOR = 8
FETCH_MAX = 200

LangReason = Literal["requested", "query", "english", "best", "ranked"]


class RankedEntry(Protocol):
    """What grouping reads from a search hit (`index_builder.store.Hit` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def lang(self) -> str: ...

    @property
    def score(self) -> float: ...


H = TypeVar("H", bound=RankedEntry)

# (topic, language) -> the topic's entry in that language, or None (`MatrixSnapshot.entry_in`).
Lookup = Callable[[str, str], H | None]


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


def _preferences(requested: str | None, detected: str | None) -> dict[str, LangReason]:
    """The languages an answer is looked for in, in order, each with the rule that wants it
    (a language wanted by two rules counts for the first)."""
    rules: tuple[tuple[str | None, LangReason], ...] = (
        (requested, "requested"),
        (detected, "query"),
        (ENGLISH, "english"),
    )
    wanted: dict[str, LangReason] = {}
    for lang, reason in rules:
        if lang:
            wanted.setdefault(lang, reason)
    return wanted


def wanted_languages(requested: str | None, detected: str | None) -> tuple[str, ...]:
    """The languages `choose_entry` looks for, in its order."""
    return tuple(_preferences(requested, detected))


def languages_to_fetch(requested: str | None, detected: str | None) -> tuple[str, ...]:
    """Without a `Lookup` (against a server): the wanted languages worth a search restricted to
    each. Not English: its entry is nearly always among the hits, and a search for it would
    double a server's work for every English query."""
    return tuple(lang for lang in wanted_languages(requested, detected) if lang != ENGLISH)


def merge_hits(hits: Sequence[H], more: Sequence[H]) -> list[H]:
    """`hits` plus the entries of `more` not already in them, best score first."""
    seen = {h.id for h in hits}
    return sorted([*hits, *(h for h in more if h.id not in seen)], key=lambda h: -h.score)


def hit_topic(hit: RankedEntry) -> str:
    """The hit's topic: an explicit one from its payload, else the id's (`topic_of`)."""
    explicit = getattr(hit, "topic", None)
    return explicit if isinstance(explicit, str) and explicit else topic_of(hit.id)


def choose_entry(
    entries: Sequence[H],
    *,
    requested: str | None,
    detected: str | None,
    topic: str = "",
    lookup: Lookup[H] | None = None,
) -> tuple[H, LangReason]:
    """The entry of one topic to show, from `entries` ordered best score first; an entry in a
    wanted language that is not among them comes from `lookup` (the index's own) when given."""
    for lang, reason in _preferences(requested, detected).items():
        for entry in entries:
            if entry.lang == lang:
                return entry, reason
        found = lookup(topic, lang) if lookup is not None else None
        if found is not None:
            return found, reason
    return entries[0], "best"


def group_by_topic(
    hits: Sequence[H],
    top_k: int,
    *,
    requested: str | None = None,
    detected: str | None = None,
    group: bool = True,
    lookup: Lookup[H] | None = None,
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
        entry, reason = choose_entry(
            entries, requested=requested, detected=detected, topic=topic, lookup=lookup
        )
        answers.append(Answer(entry, topic, reason, entries[0].score))
    return answers
