"""Loading a TF Hub text module pair (preprocessor + encoder) in a worker process.

A handle is a tfhub.dev / Kaggle URL or a local SavedModel directory, which
``hub.load`` reads itself, or a ``gs://`` SavedModel directory, which is first copied
to local disk once per machine (transforms/module_cache.py). The encoder is placed on
the first GPU when one is visible (with memory growth, so one process does not grab
the whole device); the preprocessor's tokenizer ops only exist on the CPU and stay
there.
"""
from __future__ import annotations

import functools
import logging
import threading

import tensorflow as tf

from transforms.module_cache import local_module_dir

_gpu_setup = threading.Lock()
_gpu_configured = False


def encoder_device() -> str:
    """'/GPU:0' when TensorFlow sees a GPU (memory growth switched on), else '/CPU:0'."""
    global _gpu_configured
    with _gpu_setup:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus and not _gpu_configured:
            for gpu in gpus:
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except RuntimeError:  # already initialised by someone else: keep theirs
                    logging.warning("could not enable memory growth on %s", gpu.name)
            _gpu_configured = True
        return "/GPU:0" if gpus else "/CPU:0"


@functools.lru_cache(maxsize=8)
def load_module(handle: str):
    """``hub.load`` with the tensorflow_text ops registered (TF Hub preprocessors need them).

    Cached per process: the tokenizing and the encoding stage share one copy of the
    preprocessor, and on the local runner the workers reuse the modules the launcher
    already loaded to check the options. Restored modules are safe to call from
    several threads."""
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401  (registers the ops the preprocessor graph uses)
    return hub.load(local_module_dir(handle))


@functools.lru_cache(maxsize=8)
def load_encoder(handle: str):
    with tf.device(encoder_device()):
        return load_module.__wrapped__(handle)
