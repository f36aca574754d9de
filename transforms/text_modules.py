"""Loading a TF Hub text module pair (preprocessor + encoder) in a worker process.

A handle is a tfhub.dev / Kaggle URL or a local SavedModel directory, which
``hub.load`` reads itself, or a ``gs://`` SavedModel directory, which is first copied
to local disk once per machine (transforms/module_cache.py). The encoder is placed on
a device chosen by transforms/placement.py (the first GPU unless told otherwise; GPUs
with memory growth, so one process does not grab the whole device); the
preprocessor's tokenizer ops only exist on the CPU and stay there.

Every real load (not a cache hit) leaves a marker file in ``$BEAM_EMBED_LOAD_MARKERS``
when that variable names a directory: only tests set it, to count across processes
how often a module was loaded on a machine.
"""
from __future__ import annotations

import functools
import os
import uuid
from typing import Optional

import tensorflow as tf

from transforms.module_cache import local_module_dir
from transforms.placement import device_for_slot

LOAD_MARKERS_ENV = "BEAM_EMBED_LOAD_MARKERS"


def encoder_device() -> str:
    """The first device an encoder goes on: '/GPU:0' when TensorFlow sees a GPU (memory
    growth switched on), else '/CPU:0'."""
    return device_for_slot(0)


def _mark_load(kind: str, device: str) -> None:
    directory = os.environ.get(LOAD_MARKERS_ENV)
    if directory:
        name = f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with open(os.path.join(directory, name), "w", encoding="ascii") as f:
            f.write(device)


def _hub_load(handle: str):
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401  (registers the ops the preprocessor graph uses)
    return hub.load(local_module_dir(handle))


@functools.lru_cache(maxsize=8)
def load_module(handle: str):
    """``hub.load`` with the tensorflow_text ops registered (TF Hub preprocessors need them).

    Cached per process: the tokenizing and the encoding stage share one copy of the
    preprocessor, and on the local runner the workers reuse the modules the launcher
    already loaded to check the options. Restored modules are safe to call from
    several threads."""
    module = _hub_load(handle)
    _mark_load("module", "/CPU:0")
    return module


def load_encoder(handle: str, device: Optional[str] = None):
    """The encoder with its variables on ``device`` (default: ``encoder_device()``); one
    per process and device, however the device was named."""
    return _load_encoder_on(handle, device or encoder_device())


@functools.lru_cache(maxsize=8)
def _load_encoder_on(handle: str, device: str):
    with tf.device(device):
        module = _hub_load(handle)
    _mark_load("encoder", device)
    return module


load_encoder.cache_clear = _load_encoder_on.cache_clear  # the tests empty the caches
