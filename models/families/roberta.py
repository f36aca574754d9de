"""``roberta``: byte-level BPE (vocab.json + merges.txt), ``<s> A </s></s> B </s>``
with the special ids from vocab.json, positions from pad_token_id + 1."""
from __future__ import annotations

import json

from models.families.base import Family


def build_tokenizer(files: dict[str, str], lower_case: bool):
    from models.packing import roberta_style
    from models.tokenizers.byte_bpe import ByteLevelBpeTokenizer
    with open(files["vocab.json"], encoding="utf-8") as f:
        vocab = json.load(f)
    tokenizer = ByteLevelBpeTokenizer(files["vocab.json"], files["merges.txt"])
    style = roberta_style(vocab["<s>"], vocab["<pad>"], vocab["</s>"])
    return tokenizer, style, max(vocab.values()) + 1


FAMILY = Family("roberta", ("vocab.json", "merges.txt"), build_tokenizer,
                positions_from_padding=True, type_vocab_size=1, layer_norm_eps=1e-5,
                pad_token_id=1)
