"""A tiny, randomly initialised BERT with a real WordPiece fast tokenizer, built offline.

Export and encoder tests need a model that transformers' Auto classes load exactly like a
downloaded one, but nothing can be downloaded here and the real base model takes seconds to
convert. This one is built from a seeded config and a WordPiece vocabulary trained on a small
multilingual word list, so it behaves like a BERT checkpoint in every way the tests care about
(special tokens, padding, truncation, several scripts) and builds in about a second.
"""

from __future__ import annotations

from pathlib import Path

# Several scripts and the shop vocabulary of the product, so that tokenisation of the test
# sentences gives real sub-words rather than a wall of [UNK].
_CORPUS = [
    "where is my order can i cancel the order refund please",
    "how do i change my shipping address and payment method",
    "dónde está mi pedido puedo cancelar el pedido reembolso por favor",
    "où est ma commande puis-je annuler la commande remboursement",
    "wo ist meine bestellung kann ich die bestellung stornieren rückerstattung",
    "barang saya belum sampai di mana pesanan saya pengembalian dana",
    "siparişim nerede siparişi iptal edebilir miyim iade",
    "मेरा ऑर्डर कहाँ है क्या मैं ऑर्डर रद्द कर सकता हूँ",
    "คำสั่งซื้อของฉันอยู่ที่ไหน ยกเลิกคำสั่งซื้อ คืนเงิน",
    "我的订单在哪里 我可以取消订单吗 退款",
    "can i cancel mi pedido barang saya belum sampai where is my order",
    "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9",
]

SEED = 1234
MAX_POSITIONS = 64


def _build_tokenizer(vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=1)
    # Repeating the corpus does not change the vocabulary; it is small enough as it is.
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def make_tiny_bert(out_dir: Path) -> Path:
    """Write a tiny BertModel + fast tokenizer into `out_dir` and return it."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer(vocab_size=400)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_POSITIONS,
        # Like a downloaded BERT checkpoint, so the exporter has to decide to drop it.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    fast.save_pretrained(out_dir)

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=fast.backend_tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=fast.pad_token_id,
    )
    model = BertModel(config)
    model.eval()
    model.save_pretrained(out_dir)
    return out_dir
