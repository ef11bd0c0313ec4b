"""summary.json's `codeswitch` object (issue 25): does code-switching earn its place?

Everything is a fraction (R@1 in [0, 1]); a figure that cannot be computed (its model was not
scored, its data is absent) is `null`, never a guess.

* `code_mixed_delta_r1`: R@1 of `shop` minus R@1 of `shop_no_cs` on the code-mixed test queries
  of both FAQs pooled (the shopper log's test split and, when given, the hard FAQ's), with a
  paired 95% bootstrap interval over those queries (`code_mixed_delta_ci95`,
  `metrics.paired_test`, the interval every other comparison uses).
* `penalty.<model>`: R@1 on the translated queries minus R@1 on the same entries' code-switched
  queries (the target-language question with English words: `cs-tgt`), pooled over the
  third-party sets (Debian FAQ and django-oscar, all languages), paired by entry as
  `runner.EvalResults.penalty_pairs` pairs them. The `cs-tgt` queries are made with the
  evaluation dictionaries (`freedict-XXX-eng`), never with the training ones.
* `romanised`: R@1 on the romanised test queries of both FAQs pooled: a query in a language
  written in another script (Hindi, Urdu, Japanese, Thai...) whose row says `"script": "latn"`,
  or, without a `script` field, whose letters are all Latin ("mera order kahan hai").
* `hard_faq`: R@1 on the hard FAQ's test queries; `null` fields without `--hard-faq`.
* `english_controls`: R@1 on the English queries of the third-party sets (the `controls` of
  summary.json), pooled over the two sets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import regex
from numpy.typing import NDArray

from model_export.evaluation.metrics import paired_test
from model_export.evaluation.runner import EvalResults
from model_export.shopper_data import ShopperQuery

BASE, SHOP, SHOP_NO_CS = "base", "shop", "shop_no_cs"
UNMERGED = "_unmerged"
CODE_MIXED = "code_mixed"
ROMANISED_SCRIPT = "latn"
# Languages whose own script is not Latin: text in them written in Latin letters is romanised.
NON_LATIN_LANGUAGES = frozenset(
    {
        "am", "ar", "be", "bg", "bn", "el", "fa", "gu", "he", "hi", "hy", "ja", "ka", "km", "kn",
        "ko", "lo", "ml", "mn", "mr", "my", "ne", "or", "pa", "ru", "si", "sr", "ta", "te", "th",
        "uk", "ur", "zh",
    }
)  # fmt: skip
_LETTER = regex.compile(r"\p{L}")
_LATIN = regex.compile(r"\p{Script=Latin}")


def read_scripts(path: Path) -> list[str | None]:
    """The `script` field of each non-blank line of a query file (None where it has none),
    in the order `shopper_data.load_queries` reads the queries."""
    out: list[str | None] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                script = json.loads(line).get("script")
                out.append(str(script).lower() if script else None)
    return out


def is_romanised(query: ShopperQuery, script: str | None) -> bool:
    """Whether a query is a language of another script written in Latin letters.

    Only languages written in another script can be romanised: a French query marked
    `"script": "latn"` is just French. The script is the row's `script` field, else a `Latn`
    subtag of its language (`hi-Latn`), else read off the text (all of its letters Latin).
    """
    tags = query.lang.replace("_", "-").lower().split("-")
    if tags[0] not in NON_LATIN_LANGUAGES:
        return False
    if script is None and ROMANISED_SCRIPT in tags[1:]:
        script = ROMANISED_SCRIPT
    if script is not None:
        return script == ROMANISED_SCRIPT
    letters = _LETTER.findall(query.query)
    return bool(letters) and all(_LATIN.match(c) for c in letters)


@dataclass(frozen=True)
class FaqScores:
    """One FAQ's test queries and each scored model's R@1 per query (topic level)."""

    name: str
    queries: Sequence[ShopperQuery]
    scripts: Sequence[str | None]
    r1: Mapping[str, NDArray[np.float64]]

    def __post_init__(self) -> None:
        if len(self.scripts) != len(self.queries):
            raise ValueError(
                f"{self.name}: {len(self.scripts)} scripts, {len(self.queries)} queries"
            )
        for model, values in self.r1.items():
            if values.shape != (len(self.queries),):
                raise ValueError(
                    f"{self.name}/{model}: {values.shape} values for {len(self.queries)} queries"
                )

    def code_mixed(self) -> NDArray[np.intp]:
        return np.array(
            [i for i, q in enumerate(self.queries) if q.kind == CODE_MIXED], dtype=np.intp
        )

    def romanised(self) -> NDArray[np.intp]:
        pairs = zip(self.queries, self.scripts, strict=True)
        return np.array([i for i, (q, s) in enumerate(pairs) if is_romanised(q, s)], dtype=np.intp)

    def everything(self) -> NDArray[np.intp]:
        return np.arange(len(self.queries), dtype=np.intp)


Pick = Callable[[FaqScores], NDArray[np.intp]]


def _count(faqs: Sequence[FaqScores], pick: Pick) -> int:
    return sum(int(pick(faq).size) for faq in faqs)


def pooled(faqs: Sequence[FaqScores], model: str, pick: Pick) -> NDArray[np.float64] | None:
    """`model`'s R@1 on the picked queries of every FAQ, concatenated; None when there are none,
    or when a FAQ with such queries did not score the model (a partial pool would be another
    population)."""
    parts: list[NDArray[np.float64]] = []
    for faq in faqs:
        idx = pick(faq)
        if idx.size == 0:
            continue
        if model not in faq.r1:
            return None
        parts.append(faq.r1[model][idx])
    return np.concatenate(parts) if parts else None


def _mean(values: NDArray[np.float64] | None) -> float | None:
    return float(values.mean()) if values is not None and values.size else None


def is_variant(model: str) -> bool:
    """A code-switching variant of the shop recipe scored beside it (`shop_align`,
    `shop_lexicons`, `shop_lex_*`): the `variants` object gives it shop's figures."""
    unmerged = model.endswith(UNMERGED)
    return model.startswith(SHOP + "_") and model != SHOP_NO_CS and not unmerged


def code_mixed_delta(
    faqs: Sequence[FaqScores], *, n_boot: int = 1000, seed: int = 0, model: str = SHOP
) -> tuple[float | None, list[float] | None, int]:
    """(model - shop_no_cs R@1 on the pooled code-mixed queries, [lo, hi], n)."""
    n = _count(faqs, FaqScores.code_mixed)
    a = pooled(faqs, SHOP_NO_CS, FaqScores.code_mixed)
    b = pooled(faqs, model, FaqScores.code_mixed)
    if a is None or b is None:
        return None, None, n
    res = paired_test(a, b, n_boot=n_boot, seed=seed)
    return res.delta, [res.ci_low, res.ci_high], n


def penalty(results: EvalResults | None, model: str) -> tuple[float | None, int]:
    """Translated minus cs-tgt R@1 over every paired entry of every third-party set."""
    if results is None or all(r.spec.name != model or r.status != "ok" for r in results.runs):
        return None, 0
    keys, translated, switched = results.penalty_pairs(model, "all", "all")
    if not keys:
        return None, 0
    return float(translated.mean() - switched.mean()), len(keys)


def english_control(
    controls: Mapping[str, Mapping[str, Mapping[str, Any]]], model: str
) -> float | None:
    """R@1 on the English queries of every control set, pooled (weighted by their sizes)."""
    cells = [c[model] for c in controls.values() if model in c]
    if not cells or len(cells) != len(controls):
        return None
    n = sum(int(c["n"]) for c in cells)
    return sum(float(c["r1"]) * int(c["n"]) for c in cells) / n if n else None


def codeswitch_object(
    faqs: Sequence[FaqScores],
    *,
    hard_faq: FaqScores | None,
    third_party: EvalResults | None,
    controls: Mapping[str, Mapping[str, Mapping[str, Any]]],
    n_boot: int = 1000,
    seed: int = 0,
    query_mix: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The object of issue 25's "Done when"; `faqs` are the FAQs whose test queries pool (the
    shopper log's, and the hard FAQ's when present), `hard_faq` that one alone."""
    delta, ci, n_mixed = code_mixed_delta(faqs, n_boot=n_boot, seed=seed)
    figures = {
        m: _figures(m, faqs, hard_faq, third_party, controls) for m in (BASE, SHOP, SHOP_NO_CS)
    }

    def by_model(key: str, models: Sequence[str] = (BASE, SHOP, SHOP_NO_CS)) -> dict[str, Any]:
        return {m: figures[m][key] for m in models}

    variants = sorted({m for faq in faqs for m in faq.r1 if is_variant(m)})
    return {
        "code_mixed_delta_r1": delta,
        "code_mixed_delta_ci95": ci,
        "penalty": by_model("penalty"),
        "romanised": {"n": _count(faqs, FaqScores.romanised), **by_model("romanised")},
        "hard_faq": {
            "n": len(hard_faq.queries) if hard_faq is not None else None,
            **by_model("hard_faq"),
        },
        "english_controls": by_model("english_controls", (BASE, SHOP)),
        "meta": {
            "faqs": [f.name for f in faqs],
            "code_mixed_n": n_mixed,
            "penalty_n": by_model("penalty_n"),
            "query_mix": dict(query_mix) if query_mix is not None else None,
        },
        # Each variant in shop's place, on the same queries (docs/training.md's variants table).
        "variants": {
            m: _variant(m, faqs, hard_faq, third_party, controls, n_boot, seed) for m in variants
        },
    }


def _figures(
    model: str,
    faqs: Sequence[FaqScores],
    hard_faq: FaqScores | None,
    third_party: EvalResults | None,
    controls: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, Any]:
    """One model's penalty (and its pair count), romanised, hard FAQ and English controls."""
    p, n = penalty(third_party, model)
    hard = pooled([hard_faq], model, FaqScores.everything) if hard_faq is not None else None
    return {
        "penalty": p,
        "penalty_n": n,
        "romanised": _mean(pooled(faqs, model, FaqScores.romanised)),
        "hard_faq": _mean(hard),
        "english_controls": english_control(controls, model),
    }


def _variant(
    model: str,
    faqs: Sequence[FaqScores],
    hard_faq: FaqScores | None,
    third_party: EvalResults | None,
    controls: Mapping[str, Mapping[str, Mapping[str, Any]]],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    delta, ci, _ = code_mixed_delta(faqs, n_boot=n_boot, seed=seed, model=model)
    figures = _figures(model, faqs, hard_faq, third_party, controls)
    del figures["penalty_n"]
    return {"code_mixed_delta_r1": delta, "code_mixed_delta_ci95": ci, **figures}
