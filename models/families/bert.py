"""``bert``: WordPiece (vocab.txt), ``[CLS] A [SEP] B [SEP]`` with 0/1 token types,
positions from 0; lower-casing as tokenizer_config.json says."""
from __future__ import annotations

import json
import os

from models.families.base import Family


def build_tokenizer(files: dict[str, str], lower_case: bool):
    from models.packing import bert_style
    from models.tokenizers.wordpiece import WordpieceTokenizer, read_vocab
    vocab = read_vocab(files["vocab.txt"])
    tokenizer = WordpieceTokenizer(files["vocab.txt"], lower_case=lower_case)
    return tokenizer, bert_style(vocab), len(vocab)


def lower_case(directory: str) -> bool:
    """BERT checkpoints say in tokenizer_config.json; HF's BertTokenizer defaults to True."""
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.isfile(path):
        return True
    with open(path, encoding="utf-8") as f:
        return bool(json.load(f).get("do_lower_case", True))


FAMILY = Family("bert", ("vocab.txt",), build_tokenizer, lower_case=lower_case)
