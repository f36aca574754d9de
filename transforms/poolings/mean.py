"""``mean`` (the default): the chosen layer averaged over real tokens only (the input
mask), as sentence-transformers does."""
from __future__ import annotations

import tensorflow as tf

from transforms.poolings.base import token_mask, token_states


def pool(outputs: dict, input_mask: tf.Tensor, layer: int | None) -> tf.Tensor:
    tokens = token_states(outputs, layer)
    mask = token_mask(input_mask, tokens)
    return tf.reduce_sum(tokens * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
