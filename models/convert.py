"""Converting a local Hugging Face checkpoint (bert / roberta / xlm-roberta) to TF Hub modules."""
from __future__ import annotations

import os

from models.checkpoint import read_checkpoint
from models.config import EncoderConfig
from models.export import ModuleDirs, save_module_pair
from models.random_weights import random_weights


def convert_checkpoint(checkpoint_dir: str, output_dir: str) -> ModuleDirs:
    """Write ``output_dir/{preprocessor,encoder}`` from a checkpoint directory holding
    config.json, model.safetensors and the tokenizer files of its model type."""
    checkpoint = read_checkpoint(checkpoint_dir)
    return save_module_pair(output_dir, checkpoint.config, checkpoint.load_weights(),
                            checkpoint.tokenizer_files, checkpoint.lower_case,
                            source=os.path.abspath(checkpoint_dir))


def build_random_module(config: EncoderConfig, tokenizer_files: dict[str, str], output_dir: str,
                        lower_case: bool = False, seed: int = 0) -> ModuleDirs:
    """A module pair with random weights: any width, depth, head count and vocabulary."""
    return save_module_pair(output_dir, config, random_weights(config, seed), tokenizer_files,
                            lower_case, source=f"random(seed={seed})")
