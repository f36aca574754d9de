"""Building a preprocessor + encoder pair and saving it as two TF Hub SavedModels.

A module directory holds ``preprocessor/`` and ``encoder/`` (each loadable with
``hub.load``) and ``beam_embed_model.json`` describing where they came from.
Directories are written under a temporary name and renamed into place, so a
crashed or concurrent build never leaves a half-written module behind.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from models.config import EncoderConfig, ModelConfigError
from models.encoder import TransformerEncoder
from models.families import REGISTRY as FAMILIES
from models.preprocessor import TextPreprocessor

MANIFEST = "beam_embed_model.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ModuleDirs:
    root: str

    @property
    def preprocessor(self) -> str:
        return os.path.join(self.root, "preprocessor")

    @property
    def encoder(self) -> str:
        return os.path.join(self.root, "encoder")

    @property
    def manifest(self) -> dict:
        with open(os.path.join(self.root, MANIFEST), encoding="utf-8") as f:
            return json.load(f)

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.root, MANIFEST))


def build_preprocessor(model_type: str, tokenizer_files: dict[str, str], lower_case: bool,
                       encoder_vocab_size: int | None = None) -> TextPreprocessor:
    """The tokenizer follows the model type's family (models/families/): WordPiece,
    byte-level BPE or sentencepiece."""
    if model_type not in FAMILIES:
        raise ModelConfigError(f"model_type {model_type!r} has no tokenizer")
    tokenizer, style, vocab_size = FAMILIES[model_type].build_tokenizer(tokenizer_files, lower_case)
    if encoder_vocab_size is not None and vocab_size > encoder_vocab_size:
        raise ModelConfigError(
            f"tokenizer vocabulary has {vocab_size} entries but config.json vocab_size "
            f"is {encoder_vocab_size}")
    return TextPreprocessor(tokenizer, style, vocab_size).trace_for_saving()


def save_module_pair(output_dir: str, config: EncoderConfig, weights: dict[str, np.ndarray],
                     tokenizer_files: dict[str, str], lower_case: bool, source: str) -> ModuleDirs:
    encoder = TransformerEncoder(config, weights, source=source)
    preprocessor = build_preprocessor(config.model_type, tokenizer_files, lower_case,
                                      encoder_vocab_size=config.vocab_size)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        tf.saved_model.save(preprocessor, os.path.join(staging, "preprocessor"))
        tf.saved_model.save(encoder, os.path.join(staging, "encoder"))
        manifest = {"format_version": FORMAT_VERSION, "source": source,
                    "lower_case": lower_case, "config": config.to_dict()}
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.rename(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ModuleDirs(output_dir)
