"""``cls``: the chosen layer's first token ([CLS] / <s>)."""
from __future__ import annotations

import tensorflow as tf

from transforms.poolings.base import token_states


def pool(outputs: dict, input_mask: tf.Tensor, layer: int | None) -> tf.Tensor:
    return token_states(outputs, layer)[:, 0, :]
