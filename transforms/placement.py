"""Which device an encoder copy goes on, so that every GPU of a machine is used.

A Dataflow worker with ``count:2`` or ``count:4`` GPUs runs one SDK process per vCPU
(or, with ``--model_copies``, a few shared copies). Each load of the encoder claims the
next *slot* of its job on this machine, and slot ``k`` is placed on device
``k mod D`` of the ``D`` visible devices: GPUs when TensorFlow sees any, else the
CPU's logical devices (one, unless configured otherwise, which is how the placement
is tested: ``tf.config.set_logical_device_configuration`` splits the CPU into several
devices to place on).

Slots are counted in a small file per job under the temporary directory, behind an
``flock``: the loads of one machine are in different processes that share nothing
else. Beam's own multi_process_shared keeps its address files in the same
directory. The job key travels with the pickled model handler, so every SDK process
of a job counts in the same file and another job starts again at slot 0.
"""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import re
import tempfile
import threading

_gpu_setup = threading.Lock()
_gpu_configured = False
_SAFE_KEY = re.compile(r"[^A-Za-z0-9_.-]")


def _configure_gpus(tf) -> list:
    """The physical GPUs, with memory growth switched on once per process (so that one
    process, or copy, does not take a whole device's memory)."""
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
        return gpus


def gpu_count() -> int:
    """How many GPUs this process sees (without initialising TensorFlow's devices)."""
    import tensorflow as tf
    return len(_configure_gpus(tf))


def encoder_devices() -> list[str]:
    """The devices an encoder may go on, in order: '/GPU:0', '/GPU:1'... when TensorFlow
    sees GPUs, else the CPU's logical devices ('/CPU:0' alone by default)."""
    import tensorflow as tf
    kind = "GPU" if _configure_gpus(tf) else "CPU"
    devices = tf.config.list_logical_devices(kind)
    return [f"/{kind}:{i}" for i in range(len(devices))] or ["/CPU:0"]


def device_for_slot(slot: int, devices: list[str] | None = None) -> str:
    devices = devices or encoder_devices()
    return devices[slot % len(devices)]


def claim_slot(job_key: str, directory: str | None = None) -> int:
    """The next slot of ``job_key`` on this machine (0, 1, 2...), across processes."""
    path = os.path.join(directory or tempfile.gettempdir(),
                        f"beam-embed-slots-{_SAFE_KEY.sub('_', job_key)}")
    with open(path, "a+", encoding="ascii") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        f.seek(0)
        text = f.read().strip()
        slot = int(text) if text.isdigit() else 0
        f.seek(0)
        f.truncate()
        f.write(str(slot + 1))
    return slot


@functools.lru_cache(maxsize=None)
def process_slot(job_key: str) -> int:
    """This process's one slot for ``job_key``: a process with its own model claims once,
    so the local runner's workers find the launcher's probe model on the same device."""
    return claim_slot(job_key)
