"""Random-weight encoders from a small config, for tests and benchmarks."""
from __future__ import annotations

import numpy as np

from models.config import EncoderConfig
from models.encoder import expected_weight_shapes


def random_weights(config: EncoderConfig, seed: int = 0, stddev: float = 0.02) -> dict[str, np.ndarray]:
    """Weights drawn like Hugging Face's init: N(0, stddev) matrices, zero biases, unit LayerNorm."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_weight_shapes(config).items():
        if "LayerNorm.weight" in name:
            weights[name] = np.ones(shape, np.float32)
        elif name.endswith(".bias"):
            weights[name] = np.zeros(shape, np.float32)
        else:
            weights[name] = rng.normal(0.0, stddev, shape).astype(np.float32)
    return weights
