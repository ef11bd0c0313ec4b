"""Evaluation queries: four kinds per language, written to disk with checksums.

Kinds (`lang` is the target language):

* `translated`: the question in `lang` (cross-lingual: query in `lang`, entries in English);
* `english`: the English question (monolingual control; one set, stored under `en/`);
* `cs-tgt`: the question in `lang` with some words replaced by English;
* `cs-en`: the English question with some words replaced by `lang`.

The code-switched kinds use an *evaluation* dictionary that is disjoint from the training one at
the entry level. Training switches with FreeDict English->target (`freedict-eng-XXX`); here the
reverse packages (`freedict-XXX-eng`) are read, inverted for `cs-en`, and every (English word,
target word) pair that the training dictionary also holds is removed. So no substitution seen
in evaluation was produced by the training switcher.

Sets are generated from a fixed seed (the switcher hashes seed, kind and text, so a query does
not depend on the order of the others) and written as
`<out>/<dataset>/<lang>/<kind>.jsonl` + `<out>/<dataset>/entries.jsonl`, with `SHA256SUMS` and
`manifest.json` (seed, dictionaries, counts and one checksum over all files) beside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_export.codeswitch import CodeSwitcher
from model_export.dictionaries import Dictionary, load_freedict, normalise_key
from model_export.evaluation.datasets import Corpus
from model_export.lexicon import invert, primary_senses

log = logging.getLogger(__name__)

KINDS = ("translated", "english", "cs-tgt", "cs-en")
CODE_SWITCHED = ("cs-tgt", "cs-en")
ISO3 = {"de": "deu", "fr": "fra", "es": "spa", "it": "ita", "nl": "nld", "pt": "por"}
DICT_DIR = Path("/usr/share/dictd")
DEFAULT_SEED = 20240613
DEFAULT_RATE = 0.3
MAX_TRANSLATIONS = 3
SUMS_FILE = "SHA256SUMS"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class EvalQuery:
    id: str
    query: str
    gold: tuple[str, ...]
    lang: str
    kind: str
    base: str = ""
    switched: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        row: dict[str, Any] = {
            "id": self.id,
            "query": self.query,
            "gold": list(self.gold),
            "lang": self.lang,
            "kind": self.kind,
        }
        if self.base:
            row["base"] = self.base
        if self.switched:
            row["switched"] = [list(p) for p in self.switched]
        return json.dumps(row, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> EvalQuery:
        row = json.loads(line)
        return cls(
            id=str(row["id"]),
            query=str(row["query"]),
            gold=tuple(str(g) for g in row["gold"]),
            lang=str(row["lang"]),
            kind=str(row["kind"]),
            base=str(row.get("base", "")),
            switched=tuple((str(a), str(b)) for a, b in row.get("switched", [])),
        )


@dataclass
class EvalDictionaries:
    """Per language: target->English (for `cs-tgt`) and English->target (for `cs-en`)."""

    to_en: dict[str, Dictionary] = field(default_factory=dict)
    from_en: dict[str, Dictionary] = field(default_factory=dict)
    overlap_pairs: dict[str, int] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)


def headword_casing(index_path: Path) -> dict[str, str]:
    """Normalised headword -> its spelling on the first line of the dictd entry.

    dictd indexes are casefolded ("bestellung"); the entry body starts with the headword as the
    dictionary writes it ("Bestellung /bə.ʃtɛlʊŋ/").
    """
    import gzip

    from model_export.dictionaries import decode_dictd_number

    dict_path = Path(str(index_path)[: -len(".index")] + ".dict.dz")
    with gzip.open(dict_path) as gz:
        raw = gz.read()
    out: dict[str, str] = {}
    with index_path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00"):
                continue
            offset, length = decode_dictd_number(parts[1]), decode_dictd_number(parts[2])
            first = raw[offset : offset + min(length, 200)].decode("utf-8", "replace")
            head = first.split("\n", 1)[0].split(" /", 1)[0].split(" <", 1)[0].strip()
            key = normalise_key(parts[0])
            if normalise_key(head) == key:
                out.setdefault(key, head)
    return out


def pair_set(d: Dictionary) -> set[tuple[str, str]]:
    """Normalised (source, target) pairs of a dictionary."""
    return {(k, normalise_key(t)) for k, ts in d.entries.items() for t in ts}


def without_pairs(d: Dictionary, pairs: set[tuple[str, str]]) -> tuple[Dictionary, int]:
    """`d` minus every (source, target) pair in `pairs` (both normalised); and how many went."""
    out = Dictionary(d.src_lang, d.tgt_lang, sources=list(d.sources))
    removed = 0
    for src, targets in d.entries.items():
        for tgt in targets:
            if (src, normalise_key(tgt)) in pairs:
                removed += 1
            else:
                out.add(src, tgt)
    return out, removed


def shortest_first(d: Dictionary) -> Dictionary:
    """Translations ordered by word count, then length: "no" -> "nein" before "Danke nein"."""
    out = Dictionary(d.src_lang, d.tgt_lang, sources=list(d.sources))
    for src, targets in d.entries.items():
        for tgt in sorted(targets, key=lambda t: (len(t.split()), len(t), t)):
            out.add(src, tgt)
    return out


def evaluation_dictionaries(
    eval_x_en: Dictionary,
    train_en_x: Dictionary,
    *,
    max_translations: int = MAX_TRANSLATIONS,
    exclude_training_pairs: bool = False,
    casing: Mapping[str, str] | None = None,
) -> tuple[Dictionary, Dictionary, int]:
    """(target->English, English->target) from the reverse dictionary, and the pair overlap.

    Only the reverse dictionary's primary senses are used. The third value counts
    (English, target) pairs that the training dictionary also holds; with
    `exclude_training_pairs` they are removed from both directions. Removing them is not the
    default: the common, correct translations are exactly the shared pairs, and what remains
    are rare senses ("no" -> "Danke nein"), which measures robustness to noise instead of
    code-switching. Disjointness is then by source: a separately compiled dictionary
    (`freedict-XXX-eng`), whose entries never come from the training one (`freedict-eng-XXX`).
    """
    en_x = shortest_first(invert(primary_senses(eval_x_en), casing))
    train_pairs = pair_set(train_en_x)
    pruned, overlap = without_pairs(en_x, train_pairs)
    if exclude_training_pairs:
        en_x = pruned
    x_en = invert(en_x)
    if max_translations > 0:
        en_x, x_en = en_x.truncated(max_translations), x_en.truncated(max_translations)
    return x_en, en_x, overlap


def load_eval_dictionaries(
    languages: Sequence[str],
    dict_dir: Path = DICT_DIR,
    *,
    max_translations: int = MAX_TRANSLATIONS,
    exclude_training_pairs: bool = False,
) -> EvalDictionaries:
    out = EvalDictionaries()
    for lang in languages:
        iso = ISO3[lang]
        rev = dict_dir / f"freedict-{iso}-eng.index"
        train = dict_dir / f"freedict-eng-{iso}.index"
        for p, pkg in ((rev, f"dict-freedict-{iso}-eng"), (train, f"dict-freedict-eng-{iso}")):
            if not p.is_file():
                raise FileNotFoundError(f"{p} missing: install {pkg} (scripts/ensure-debs.sh)")
        x_en, en_x, overlap = evaluation_dictionaries(
            load_freedict(rev, src_lang=lang, tgt_lang="en"),
            load_freedict(train, src_lang="en", tgt_lang=lang),
            max_translations=max_translations,
            exclude_training_pairs=exclude_training_pairs,
            casing=headword_casing(rev),
        )
        out.to_en[lang], out.from_en[lang] = x_en, en_x
        out.overlap_pairs[lang] = overlap
        out.sources[lang] = [str(rev)] + (
            [f"minus pairs of {train}"] if exclude_training_pairs else []
        )
        log.info(
            "eval dictionary %s: %d %s->en headwords, %d en->%s; %d pairs also in %s%s",
            lang,
            len(x_en),
            lang,
            len(en_x),
            lang,
            overlap,
            train.name,
            " (removed)" if exclude_training_pairs else "",
        )
    return out


def switch_text(
    switcher: CodeSwitcher, text: str, *, salt: str, attempts: int = 8
) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """A code-switched version with at least one replacement, or None if none is possible.

    The rate policy may draw zero switches for a short text; further salts are tried in a fixed
    order so the result stays deterministic.
    """
    for attempt in range(attempts):
        result = switcher.switch(text, salt=f"{salt}:{attempt}")
        if result.replacements:
            return result.text, tuple((r.source, r.target) for r in result.replacements)
        if result.switchable == 0:
            return None
    return None


def build_queries(
    corpus: Corpus,
    dictionaries: EvalDictionaries,
    *,
    seed: int = DEFAULT_SEED,
    rate: float = DEFAULT_RATE,
    languages: Sequence[str] | None = None,
) -> dict[tuple[str, str], list[EvalQuery]]:
    """(lang, kind) -> queries. `english` is keyed by lang `en`."""
    langs = list(languages or corpus.languages)
    out: dict[tuple[str, str], list[EvalQuery]] = {}
    by_entry = {e.id: e for e in corpus.entries}
    out[("en", "english")] = [
        EvalQuery(f"{corpus.name}:en:english:{e.id}", e.question, (e.id,), "en", "english")
        for e in corpus.entries
    ]
    for lang in langs:
        items = corpus.items_for(lang)
        out[(lang, "translated")] = [
            EvalQuery(
                f"{corpus.name}:{lang}:translated:{i.entry_id}",
                i.text,
                (i.entry_id,),
                lang,
                "translated",
            )
            for i in items
        ]
        # "first": the primary sense (to_en) or the shortest translation (from_en).
        to_en = CodeSwitcher(
            {"en": dictionaries.to_en[lang]},
            policy="rate",
            rate=rate,
            seed=seed,
            translation_choice="first",
        )
        from_en = CodeSwitcher(
            {lang: dictionaries.from_en[lang]},
            policy="rate",
            rate=rate,
            seed=seed,
            translation_choice="first",
        )
        cs_tgt: list[EvalQuery] = []
        cs_en: list[EvalQuery] = []
        for i in items:
            switched = switch_text(to_en, i.text, salt=f"{corpus.name}:cs-tgt")
            if switched is not None:
                cs_tgt.append(
                    EvalQuery(
                        f"{corpus.name}:{lang}:cs-tgt:{i.entry_id}",
                        switched[0],
                        (i.entry_id,),
                        lang,
                        "cs-tgt",
                        base=i.text,
                        switched=switched[1],
                    )
                )
            english = by_entry[i.entry_id].question
            switched = switch_text(from_en, english, salt=f"{corpus.name}:cs-en:{lang}")
            if switched is not None:
                cs_en.append(
                    EvalQuery(
                        f"{corpus.name}:{lang}:cs-en:{i.entry_id}",
                        switched[0],
                        (i.entry_id,),
                        lang,
                        "cs-en",
                        base=english,
                        switched=switched[1],
                    )
                )
        out[(lang, "cs-tgt")] = cs_tgt
        out[(lang, "cs-en")] = cs_en
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jsonl(rows: Iterable[str]) -> bytes:
    return "".join(r + "\n" for r in rows).encode("utf-8")


def write_eval_set(
    out_dir: Path,
    corpus: Corpus,
    queries: Mapping[tuple[str, str], Sequence[EvalQuery]],
    *,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write entries, queries, SHA256SUMS and manifest.json under `out_dir/<corpus.name>/`.

    Returns the manifest. File contents depend only on the corpus and the queries, so the same
    inputs and seed give the same checksums on every machine.
    """
    root = out_dir / corpus.name
    files: dict[str, bytes] = {
        "entries.jsonl": _jsonl(
            json.dumps(
                {"id": e.id, "text": e.text, "question": e.question},
                ensure_ascii=False,
                sort_keys=True,
            )
            for e in corpus.entries
        )
    }
    counts: dict[str, int] = {"entries": len(corpus.entries)}
    for (lang, kind), qs in sorted(queries.items()):
        rel = f"{lang}/{kind}.jsonl"
        files[rel] = _jsonl(q.to_json() for q in qs)
        counts[rel] = len(qs)
    sums = {rel: sha256_bytes(data) for rel, data in sorted(files.items())}
    sums_text = "".join(f"{h}  {rel}\n" for rel, h in sums.items())
    manifest: dict[str, Any] = {
        "dataset": corpus.name,
        "checksum": sha256_bytes(sums_text.encode("utf-8")),
        "counts": counts,
        "files": sums,
        "sources": dict(corpus.sources),
        **(meta or {}),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / SUMS_FILE).write_text(sums_text, encoding="utf-8")
    (root / MANIFEST_FILE).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    return manifest


class ChecksumError(ValueError):
    """An evaluation file differs from the checksum written with it."""


@dataclass
class LoadedSet:
    dataset: str
    checksum: str
    entries: list[tuple[str, str]]  # (id, text)
    queries: dict[tuple[str, str], list[EvalQuery]]


def load_eval_set(root: Path) -> LoadedSet:
    """Read a set written by `write_eval_set`, verifying every file against SHA256SUMS."""
    sums_path = root / SUMS_FILE
    if not sums_path.is_file():
        raise FileNotFoundError(f"{sums_path} missing: build the sets with `eval-data`")
    sums_text = sums_path.read_text(encoding="utf-8")
    queries: dict[tuple[str, str], list[EvalQuery]] = {}
    entries: list[tuple[str, str]] = []
    for line in sums_text.splitlines():
        digest, rel = line.split("  ", 1)
        data = (root / rel).read_bytes()
        if sha256_bytes(data) != digest:
            raise ChecksumError(f"{root / rel} does not match {sums_path}: rebuild with eval-data")
        rows = [r for r in data.decode("utf-8").splitlines() if r.strip()]
        if rel == "entries.jsonl":
            entries = [(str(r["id"]), str(r["text"])) for r in map(json.loads, rows)]
        else:
            lang, kind = rel[: -len(".jsonl")].split("/")
            queries[(lang, kind)] = [EvalQuery.from_json(r) for r in rows]
    return LoadedSet(root.name, sha256_bytes(sums_text.encode("utf-8")), entries, queries)
