"""The pooling modes: each is one module here (mean.py, cls.py, pooled_output.py,
max.py) plus one line in ``REGISTRY``.

The registry itself is light (no TensorFlow): ``beam-embed --help`` and
``--pooling``'s check take ``POOLING_MODES`` from it. A mode's module, which imports
TensorFlow, is imported when the encoder is traced with that mode.

A mode's module defines ``pool(outputs: dict, input_mask, layer: int | None) -> Tensor``:
one vector per text from the encoder's outputs (see transforms/poolings/base.py for
the chosen layer's token states and the mask).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Pooling:
    name: str
    module: str  # transforms.poolings.<module> defines pool()

    def function(self) -> Callable:
        return importlib.import_module(f"{__name__}.{self.module}").pool


# The order is --help's (mean, the default, first).
REGISTRY = {p.name: p for p in (
    Pooling("mean", "mean"),
    Pooling("cls", "cls"),
    Pooling("pooled_output", "pooled_output"),
    Pooling("max", "max"),
)}
POOLING_MODES = tuple(REGISTRY)


def pooling(name: str) -> Pooling:
    """The registered mode ``name``; ValueError naming the modes otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown pooling {name!r}; expected one of {', '.join(POOLING_MODES)}")
    return REGISTRY[name]
