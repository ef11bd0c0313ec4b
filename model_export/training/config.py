"""One run = one config file (TOML or JSON) holding every hyperparameter.

Unknown keys are errors, so a misspelt setting cannot silently fall back to a default. Relative
paths stay relative to the working directory (the repository root), as in the shipped configs.

A variant names the run it varies, `extends = "shop.toml"` (relative to its own file), and holds
only what it changes: its tables are merged into the parent's key by key, any other value
replaces the parent's. So a variant shows what it varies, and a change to the recipe reaches
every variant of it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

DEFAULT_LANGUAGES = ["de", "fr", "es", "it", "nl", "pt"]
ISO3 = {"de": "deu", "fr": "fra", "es": "spa", "it": "ita", "nl": "nld", "pt": "por"}
# Training reads the English->X FreeDict packages; the evaluation sets are switched with the
# separately compiled X->English packages (freedict-XXX-eng), which training must not read.
FREEDICT_FROM_EN = "/usr/share/dictd/freedict-eng-{}.index"


@dataclass
class LanguageDictionaries:
    """The dictionaries of one language, by direction.

    `from_en` (en->X) switches English text into X words; `to_en` (X->en) switches X text into
    English words. With `reverse_fallback`, a missing direction is the other one reversed (the
    run report marks it "reversed").
    """

    from_en: list[str] = field(default_factory=list)
    to_en: list[str] = field(default_factory=list)
    reverse_fallback: bool = True


def _default_dictionaries() -> dict[str, LanguageDictionaries]:
    return {
        lang: LanguageDictionaries(from_en=[FREEDICT_FROM_EN.format(iso)])
        for lang, iso in ISO3.items()
    }


@dataclass
class ModelConfig:
    base_dir: str = "artifacts/base/multilingual-e5-small"
    # e5 is trained with mean pooling and these prefixes; serving applies the same ones.
    pooling: Literal["mean", "cls"] = "mean"
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    max_length: int = 128
    # Frozen embeddings keep the rows of languages we never train on where the base model put
    # them (and save most of the optimizer memory: 96M of e5-small's 118M weights are embeddings).
    freeze_embeddings: bool = False
    gradient_checkpointing: bool = False


@dataclass
class CodeSwitchConfig:
    """The dictionaries and the sampler; which stage switches what is per stage (see below)."""

    enabled: bool = True  # false: no stage switches (the no-code-switching ablation)
    policy: Literal["official", "rate"] = "rate"
    rate: float = 0.10
    mix: Literal["sentence", "word"] = "sentence"
    languages: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGES))
    dictionaries: dict[str, LanguageDictionaries] = field(default_factory=_default_dictionaries)
    max_translations: int = 3
    translation_choice: Literal["random", "first"] = "random"
    # Articles, pronouns, prepositions... are false friends across languages ("no" -> "Nein"
    # inside Portuguese); shoppers switch content words. Extra words per language: one per line.
    switch_function_words: bool = False
    function_words_files: dict[str, list[str]] = field(default_factory=dict)
    # Longer dictionary sides are glosses ("mit schöner Regelmäßigkeit"), not translations.
    max_words: int = 2
    # FreeDict's sense order is not frequency: rank translations by target-language word
    # frequency (wordfreq) and drop those rarer than min_zipf ("mailorder" 1.6, "order" 5.5).
    rank_by_frequency: bool = True
    min_zipf: float = 2.5
    # The shop's own text (FAQ JSONL with lang/question/answer, shopper log JSONL with
    # lang/query; train split only, the eval guard drops anything it knows): a translation it
    # contains ranks first and is never dropped as rare (model_export/lexicons/shop_text.py).
    shop_text: list[str] = field(default_factory=list)
    # Headwords of up to this many words switch as one unit ("cash on delivery" -> "Nachnahme");
    # 0 keeps max_words. Longer translations only where the shop's text has them.
    max_phrase_words: int = 0
    # Languages whose dictionary side is romanised into informal Latin spelling (hi, bn, mr):
    # en->hi switches English text into Hinglish words ("where is mera order").
    romanise: list[str] = field(default_factory=list)


@dataclass
class StageSwitchConfig:
    """Which sides of a pair one stage switches; `policy`/`rate` override [codeswitch]'s."""

    enabled: bool = True
    switch_queries: bool = True
    switch_labels: bool = True
    policy: Literal["official", "rate"] | None = None
    rate: float | None = None


@dataclass
class DataConfig:
    train_files: list[str] = field(default_factory=list)
    # Pairs whose `lang` is set and not listed here stay out of training (zero-shot transfer).
    languages: list[str] = field(default_factory=lambda: ["en", *DEFAULT_LANGUAGES])
    max_pairs: int = 0
    # Per train file: at most this many pairs (sampled with the run's seed), so a large general
    # corpus (oscar) does not drown a shop's own pairs. Keys are the paths in train_files.
    max_pairs_per_file: dict[str, int] = field(default_factory=dict)
    eval_dirs: list[str] = field(default_factory=lambda: ["artifacts/eval"])
    debian_faq_dir: str = "/usr/share/doc/debian/FAQ"
    guard_mode: Literal["raise", "drop"] = "raise"
    # Shopper splits let past the guard: [] (default) or ["dev"] (`make demo-loop`); never test.
    allow_shopper_splits: list[Literal["dev"]] = field(default_factory=list)
    dedupe: bool = True


@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 32
    epochs: int = 3
    # > 0 caps the stage at this many optimizer steps (smoke runs); 0 = run all epochs.
    max_steps: int = 0
    grad_clip: float = 1.0
    grad_accum: int = 1


@dataclass
class PretrainConfig:
    """Continual pre-training (2403.01364): MLM on code-switched text + in-batch similarity."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))
    mlm_weight: float = 0.1
    mlm_probability: float = 0.15
    similarity_loss: bool = True
    tau: float = 0.05
    # The MLM head is new (e5 ships none): its first N steps train it alone, the encoder frozen,
    # so the encoder is not pushed around by a random head. They are steps of this stage (the
    # stage's total is unchanged); the encoder's warm-up/decay schedule starts after them.
    head_warmup_steps: int = 0
    # The head's learning rate for the whole stage (a fresh head can take a larger one than
    # the pre-trained encoder); None = the stage's optim.lr.
    head_lr: float | None = None
    # The official code switches during continual pre-training.
    codeswitch: StageSwitchConfig = field(default_factory=StageSwitchConfig)


@dataclass
class FinetuneConfig:
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5))
    loss: Literal["infonce", "clear"] = "infonce"
    tau: float = 0.05
    hard_negatives: bool = False
    clear_a: float = 0.4
    clear_b: float = 0.2
    clear_scale: float = 20.0
    clear_kl: bool = True
    optical_weight: float = 0.0  # > 0 adds OPTICAL token-alignment distillation
    optical_epsilon: float = 0.1
    optical_iterations: int = 50
    # > 0 adds the code-mixed alignment loss (losses/alignment.py, arXiv 2603.19771) at this
    # weight: each switched query of a translation pair is pulled towards both of its
    # monolingual sources, the target-language sentence and the English one. Needs the
    # fine-tuning stage to switch queries; a row counts only where the switch left exactly the
    # pair's two languages in the text.
    align_weight: float = 0.0
    # Pair sources (`Pair.source` itself, or a prefix of it ending before a ":": "oscar" for
    # "oscar:de") whose query and label are one sentence in two languages: only there are both
    # monolingual sources known. The shopper log's pairs (`logs`) join a query to its topic's
    # question, a paraphrase, not a translation.
    align_sources: list[str] = field(
        default_factory=lambda: ["faq:translation", "oscar", "debian-reference"]
    )
    # The official fine-tuning trains on the pairs as they are; turn on to switch here too.
    codeswitch: StageSwitchConfig = field(default_factory=lambda: StageSwitchConfig(enabled=False))


@dataclass
class RunConfig:
    name: str = "run"
    output_dir: str = "artifacts/train/run"
    seed: int = 13
    stages: list[Literal["pretrain", "finetune"]] = field(
        default_factory=lambda: ["pretrain", "finetune"]
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True  # autocast on CUDA only; CPU always runs fp32
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    # Dev split: 2403.01364's official code keeps the fine-tuning checkpoint with the best dev
    # top-10 hit rate. Pairs are held out by a hash of their text (same split whatever the
    # order or sampling) and never trained on. 0 = no dev split, no dev evaluation.
    dev_fraction: float = 0.05
    # Fewer dev pairs than this and the split is skipped (everything trains): a handful of
    # pairs cannot rank checkpoints, and with under 10 labels hit@10 is always 1.
    dev_min_pairs: int = 20
    # More than this go back to training: every evaluation encodes all dev queries and labels.
    dev_max_pairs: int = 500
    # Evaluate on dev every N optimizer steps of a stage; always at its first and last step.
    # 0 = only at those two.
    eval_every: int = 50
    # Export the last stage's best dev checkpoint rather than its last step (one CPU copy of
    # the weights, also stored in checkpoints so --resume keeps it).
    select_best: bool = True
    best_metric: Literal["hit@10", "R@1"] = "hit@10"
    model: ModelConfig = field(default_factory=ModelConfig)
    codeswitch: CodeSwitchConfig = field(default_factory=CodeSwitchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


T = TypeVar("T")


class ConfigError(ValueError):
    pass


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in args:
            try:
                return _convert(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if (
        isinstance(tp, type)
        and isinstance(value, tp)
        and not (tp is int and isinstance(value, bool))
    ):
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _build(cls: type[T], raw: dict[str, Any], where: str, base: T | None = None) -> T:
    # Start from the defaults (or the enclosing default) so a partial table keeps the rest,
    # e.g. `[finetune.optim] batch_size = 8` keeps fine-tuning's own default lr.
    current: Any = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(current)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown settings {unknown}")
    kwargs: dict[str, Any] = {}
    for k, v in raw.items():
        sub = f"{where}.{k}".lstrip(".")
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(v, dict):
            kwargs[k] = _build(tp, v, sub, getattr(current, k))
        else:
            kwargs[k] = _convert(tp, v, sub)
    result: T = dataclasses.replace(current, **kwargs)
    return result


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    return _build(RunConfig, raw, "")


EXTENDS = "extends"


def read_config_dict(path: str | Path) -> dict[str, Any]:
    """The settings of the config file `path` with those of the file it `extends` under them
    (recursively); a ConfigError names the file at fault."""
    return _read(Path(path), ())


def _read(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path.resolve() in chain:
        names = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{path}: extends itself ({names})")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError give the line
        raise ConfigError(f"{path}: {exc}") from None
    parent = raw.pop(EXTENDS, None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: {EXTENDS} must be the path of a config file, not {parent!r}")
    return _merged(_read(path.parent / parent, (*chain, path.resolve())), raw)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            value = _merged(below, value)
        out[key] = value
    return out


def load_config(path: str | Path) -> RunConfig:
    """The run `path` describes; a ConfigError (a ValueError) names the file and the setting."""
    raw = read_config_dict(path)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
