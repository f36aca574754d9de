"""``pooled_output``: the module's own pooled output (for RoBERTa/XLM-R a dense+tanh
head whose pre-training objective never trained it). ``--layer`` does not apply."""
from __future__ import annotations

import tensorflow as tf


def pool(outputs: dict, input_mask: tf.Tensor, layer: int | None) -> tf.Tensor:
    return outputs["pooled_output"]
