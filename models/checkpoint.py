"""Reading a local Hugging Face checkpoint directory: config, weights, tokenizer files."""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from models.config import EncoderConfig, ModelConfigError
from models.families import REGISTRY

WEIGHTS_FILE = "model.safetensors"
# What each model type's tokenizer needs, relative to the checkpoint directory.
TOKENIZER_FILES = {name: family.tokenizer_files for name, family in REGISTRY.items()}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    directory: str
    config: EncoderConfig
    tokenizer_files: dict[str, str]
    lower_case: bool

    def load_weights(self) -> dict[str, np.ndarray]:
        """The encoder's weights with the model prefix ('bert.', 'roberta.') removed."""
        from safetensors.numpy import load_file
        path = os.path.join(self.directory, WEIGHTS_FILE)
        raw = load_file(path)
        anchor = "embeddings.word_embeddings.weight"
        prefixes = [k[: -len(anchor)] for k in raw if k.endswith(anchor)]
        if len(prefixes) != 1:
            raise ModelConfigError(
                f"{path}: expected exactly one '*{anchor}' tensor, found {len(prefixes)}")
        prefix = prefixes[0]
        return {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}


def _require(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise ModelConfigError(f"{what} not found: {path}")
    return path


def read_checkpoint(directory: str) -> Checkpoint:
    if not os.path.isdir(directory):
        raise ModelConfigError(f"checkpoint directory not found: {directory}")
    config = EncoderConfig.from_json_file(os.path.join(directory, "config.json"))
    _require(os.path.join(directory, WEIGHTS_FILE),
             "weights file (only safetensors checkpoints are supported)")
    files = {name: _require(os.path.join(directory, name), f"{config.model_type} tokenizer file")
             for name in TOKENIZER_FILES[config.model_type]}
    lower_case = REGISTRY[config.model_type].lower_case(directory)
    return Checkpoint(directory, config, files, lower_case=lower_case)
