"""The architecture of a BERT-family encoder, read from a Hugging Face config.json."""
from __future__ import annotations

import dataclasses
import json
import os

from models.families import MODEL_TYPES, REGISTRY

# The model types a family module (models/families/) handles.
SUPPORTED_MODEL_TYPES = MODEL_TYPES


class ModelConfigError(ValueError):
    """A config, checkpoint or tokenizer file that cannot be turned into a module."""


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_act: str = "gelu"

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"model_type {self.model_type!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
        if self.hidden_size % self.num_attention_heads:
            raise ModelConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act != "gelu":
            # HF's "gelu" is the exact erf form; "gelu_new"/"gelu_pytorch_tanh" are not.
            raise ModelConfigError(
                f"hidden_act {self.hidden_act!r} is not supported; only exact 'gelu'")

    @property
    def uses_roberta_positions(self) -> bool:
        """RoBERTa/XLM-R number positions from padding_idx + 1 (fairseq's convention)."""
        return REGISTRY[self.model_type].positions_from_padding

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> "EncoderConfig":
        if "model_type" not in raw:
            raise ModelConfigError(f"{source}: missing field 'model_type'")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING}
        missing = sorted(required - raw.keys())
        if missing:
            raise ModelConfigError(f"{source}: missing field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in raw.items() if k in names}
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ModelConfigError(
                f"{source}: position_embedding_type "
                f"{raw['position_embedding_type']!r} is not supported; only 'absolute'")
        try:
            return cls(**kwargs)
        except ModelConfigError as e:
            raise ModelConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str) -> "EncoderConfig":
        if not os.path.exists(path):
            raise ModelConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as e:
                raise ModelConfigError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ModelConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        return cls.from_dict(raw, source=path)
