"""Keep evaluation texts out of training data.

The guard loads every text of the evaluation sets (JSONL files with a `query`, `text` or
`question` field under an evaluation directory such as `artifacts/eval/`, the Debian FAQ
question headings when `debian-faq*` is installed, the dev and test queries of the shopper
query log under `data/shopper/`, see `model_export.shopper_data`, and those of the hard FAQ under
`data/hard_faq/`, see `model_export.hard_faq`, and the questions on topics the sample FAQ lacks
under `data/gaps/`, which `make demo-loop` replays), normalises them (NFKC,
casefold, e5 prefixes, format placeholders and punctuation removed, single spaces) and refuses
any training pair whose query or label matches one. Punctuation and placeholders go because the
evaluation builders clean strings that training keeps raw: "Is public" in the django-oscar
training pairs is "Is public?" in the evaluation set, and "'%(title)s' has been added" is
"' ' has been added".
`mode="raise"` stops the run; `mode="drop"` removes the pairs and logs how many went.

`allow_shopper_splits=("dev",)` lets the shopper dev split in (`make demo-loop`, where the dev
queries play a shop's live traffic and come back through the query log as clicked searches);
the test split is what the task is measured on and can never be let in.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar

# Re-exported: callers and tests compare texts by the guard's key under this name.
from model_export import hard_faq
from model_export.guard_key import normalise as normalise
from model_export.shopper_data import GUARDED_SPLITS, guarded_texts

log = logging.getLogger(__name__)

EVAL_FIELDS = ("query", "text", "question")
DEFAULT_EVAL_DIR = Path("artifacts/eval")
DEBIAN_FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
# The shopper query log (dev/test splits are evaluation data); beside the package, not the cwd.
DEFAULT_SHOPPER_DIR = Path(__file__).resolve().parents[1] / "data" / "shopper"
# The hard FAQ's query set (dev/test are evaluation data, like the shopper log's).
DEFAULT_HARD_FAQ_DIR = hard_faq.DEFAULT_DIR
# Questions on topics the sample FAQ lacks (`make demo-loop`'s planted gaps): JSONL `query`.
DEFAULT_GAPS_DIR = Path(__file__).resolve().parents[1] / "data" / "gaps"
# The shopper splits a run may let into training; test is measured and never is.
ALLOWABLE_SHOPPER_SPLITS = ("dev",)
GuardMode = Literal["raise", "drop"]

_HEADING_RE = re.compile(r"<h[1-6][^>]*>(.*?)</h[1-6]>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_SECTION_NUMBER_RE = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?)\s+")


class TextPair(Protocol):
    @property
    def query(self) -> str: ...

    @property
    def label(self) -> str: ...


P = TypeVar("P", bound=TextPair)


class EvalLeakError(ValueError):
    """Training pairs overlap an evaluation set."""


class MissingEvalSetsError(ValueError):
    """A configured evaluation directory does not exist, so the guard could not read it."""


def eval_jsonl_texts(eval_dir: Path) -> Iterable[str]:
    for path in sorted(eval_dir.rglob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                if not isinstance(row, dict):
                    continue
                for f in EVAL_FIELDS:
                    if isinstance(row.get(f), str):
                        yield row[f]


def debian_faq_questions(faq_dir: Path = DEBIAN_FAQ_DIR) -> Iterable[str]:
    """Section headings of the Debian FAQ in every installed language (HTML, optionally gzipped)."""
    if not faq_dir.is_dir():
        return
    for path in sorted(faq_dir.rglob("*")):
        name = path.name
        if not (name.endswith(".html") or name.endswith(".html.gz")) or not path.is_file():
            continue
        if name.endswith(".gz"):
            with gzip.open(path) as gz:
                raw = gz.read()
        else:
            raw = path.read_bytes()
        for heading in _HEADING_RE.findall(raw.decode("utf-8", errors="replace")):
            text = html.unescape(_TAG_RE.sub(" ", heading))
            text = _SECTION_NUMBER_RE.sub("", " ".join(text.split()))
            if text:
                yield text


@dataclass
class EvalGuard:
    texts: frozenset[str]
    mode: GuardMode = "raise"
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_sources(
        cls,
        eval_dirs: Sequence[str | Path] = (DEFAULT_EVAL_DIR,),
        *,
        debian_faq_dir: str | Path | None = DEBIAN_FAQ_DIR,
        extra_texts: Iterable[str] = (),
        shopper_dir: str | Path | None = DEFAULT_SHOPPER_DIR,
        hard_faq_dir: str | Path | None = DEFAULT_HARD_FAQ_DIR,
        gaps_dir: str | Path | None = DEFAULT_GAPS_DIR,
        allow_shopper_splits: Sequence[str] = (),
        mode: GuardMode = "raise",
    ) -> EvalGuard:
        bad = sorted(set(allow_shopper_splits) - set(ALLOWABLE_SHOPPER_SPLITS))
        if bad:
            raise ValueError(
                f"shopper split(s) {bad} cannot be let into training: only "
                f"{list(ALLOWABLE_SHOPPER_SPLITS)} may (the test split is what is measured)"
            )
        texts: set[str] = {normalise(t) for t in extra_texts}
        sources: list[str] = []
        # On by default: the trainer and every builder call this with their own arguments, and a
        # shopper test query must be refused by all of them (None turns it off, for tests).
        if shopper_dir is not None and Path(shopper_dir).is_dir():
            splits = [s for s in GUARDED_SPLITS if s not in allow_shopper_splits]
            texts.update(normalise(t) for t in guarded_texts(shopper_dir, splits))
            sources.append(f"{shopper_dir} ({'+'.join(splits)})")
        if gaps_dir is not None and Path(gaps_dir).is_dir():
            texts.update(normalise(t) for t in eval_jsonl_texts(Path(gaps_dir)))
            sources.append(str(gaps_dir))
        # The same for the hard FAQ: it exists to measure what training does not see.
        if hard_faq_dir is not None and Path(hard_faq_dir).is_dir():
            texts.update(normalise(t) for t in hard_faq.guarded_texts(hard_faq_dir))
            sources.append(str(hard_faq_dir))
        for d in eval_dirs:
            d = Path(d)
            if d.is_dir():
                texts.update(normalise(t) for t in eval_jsonl_texts(d))
                sources.append(str(d))
        if debian_faq_dir is not None and Path(debian_faq_dir).is_dir():
            texts.update(normalise(t) for t in debian_faq_questions(Path(debian_faq_dir)))
            sources.append(str(debian_faq_dir))
        texts.discard("")
        log.info("eval guard: %d evaluation texts from %s", len(texts), sources or "nothing")
        return cls(frozenset(texts), mode, sources)

    def leaks(self, pair: TextPair) -> bool:
        return normalise(pair.query) in self.texts or normalise(pair.label) in self.texts

    def filter(self, pairs: Iterable[P]) -> tuple[list[P], int]:
        """The pairs that do not leak, and how many did; raises in `raise` mode if any did."""
        kept: list[P] = []
        leaked: list[P] = []
        for p in pairs:
            (leaked if self.leaks(p) else kept).append(p)
        if leaked and self.mode == "raise":
            example = leaked[0]
            raise EvalLeakError(
                f"{len(leaked)} training pairs contain evaluation text "
                f"(e.g. query={example.query!r}, label={example.label!r}); "
                "remove them or set the guard to mode='drop'"
            )
        if leaked:
            log.warning(
                "eval guard dropped %d of %d training pairs", len(leaked), len(kept) + len(leaked)
            )
        return kept, len(leaked)
