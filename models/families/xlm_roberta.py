"""``xlm-roberta``: sentencepiece (sentencepiece.bpe.model) with fairseq's id shift,
RoBERTa's packing (<s>=0, <pad>=1, </s>=2) and positions from pad_token_id + 1."""
from __future__ import annotations

from models.families.base import Family


def build_tokenizer(files: dict[str, str], lower_case: bool):
    from models.packing import roberta_style
    from models.tokenizers.sentencepiece import SentencepieceTokenizer
    tokenizer = SentencepieceTokenizer(files["sentencepiece.bpe.model"])
    return tokenizer, roberta_style(), tokenizer.vocab_size


FAMILY = Family("xlm-roberta", ("sentencepiece.bpe.model",), build_tokenizer,
                positions_from_padding=True, type_vocab_size=1, layer_norm_eps=1e-5,
                pad_token_id=1)
