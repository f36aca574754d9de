"""What a model family is: the facts and the tokenizer that set one Hugging Face
``model_type`` apart from the others over the same BERT-style Transformer encoder
(models/encoder.py).

Light on purpose (no TensorFlow): models/config.py, models/checkpoint.py and the
``beam-embed-models`` parser read these facts; only ``build_tokenizer`` imports a
tokenizer (and TensorFlow), when a preprocessor is built.
"""
from __future__ import annotations

import dataclasses
from typing import Callable


def cased(directory: str) -> bool:
    """A tokenizer that never lower-cases (byte-level BPE, sentencepiece)."""
    return False


@dataclasses.dataclass(frozen=True)
class Family:
    model_type: str  # config.json's "model_type"
    # The tokenizer's files, relative to the checkpoint directory.
    tokenizer_files: tuple[str, ...]
    # ``build_tokenizer(files, lower_case) -> (tokenizer, PackingStyle, vocab_size)``:
    # files maps each of tokenizer_files to its path.
    build_tokenizer: Callable
    # fairseq's convention (RoBERTa, XLM-R): real tokens' positions count from
    # pad_token_id + 1, and padding sits at pad_token_id; otherwise from 0.
    positions_from_padding: bool = False
    # The config facts ``beam-embed-models random`` fills in (HF's defaults for it).
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # ``lower_case(checkpoint_dir) -> bool``: whether its tokenizer lower-cases.
    lower_case: Callable[[str], bool] = cased

    @property
    def position_offset(self) -> int:
        """Rows of the position table before the first token's (2 for RoBERTa's pad 1)."""
        return self.pad_token_id + 1 if self.positions_from_padding else 0
