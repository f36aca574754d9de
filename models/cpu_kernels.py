"""Which CPU kernels TensorFlow runs: oneDNN's wherever the CPU has AVX2 and FMA.

TensorFlow turns oneDNN on by itself only on CPUs with AVX-512's neural-network
extensions (VNNI, BF16, AMX). Elsewhere it runs Eigen's kernels, and on a 2-core
AMD EPYC with AVX2 only (Dataflow's n2d workers are such CPUs) Eigen's float32
matmul reached 47-65 GFLOP/s where oneDNN's reached 124-137, the same as
onnxruntime's MLAS on the encoder's shapes. The encoder is ~90 % matmul, so
beam-embed asks for oneDNN on every x86 CPU with AVX2 and FMA.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it loads, so this has to run
before the first ``import tensorflow`` in the process: the ``models``,
``transforms``, ``pipeline`` and ``bench`` packages call it from their
``__init__``, which Python runs before any of their modules (an SDK worker
unpickling a DoFn included). A value the user set, ``0`` included, is left alone,
and so is a process that has loaded TensorFlow already.

Numerics: a row's float32 bits may depend on its batch-mates under either kernel
set (Eigen's too: measured on MiniLM, one row in 2, 8 and 17-document batches),
and int8 output stays bit-identical between one and two workers
(``tests/test_compact.py``) with oneDNN on this kind of CPU as on AVX-512 ones.
"""
from __future__ import annotations

import os
import platform
import sys

ENV = "TF_ENABLE_ONEDNN_OPTS"
NEEDED_FLAGS = frozenset({"avx2", "fma"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's feature flags; empty where /proc/cpuinfo is not Linux's."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def onednn_choice(environ, machine: str, flags: frozenset[str], tensorflow_loaded: bool) -> str | None:
    """The value to give ``TF_ENABLE_ONEDNN_OPTS``, or None to leave TensorFlow's choice."""
    if ENV in environ or tensorflow_loaded:
        return None
    if machine.lower() not in ("x86_64", "amd64") or not NEEDED_FLAGS <= flags:
        return None
    return "1"


def prefer_onednn() -> None:
    choice = onednn_choice(os.environ, platform.machine(), cpu_flags(), "tensorflow" in sys.modules)
    if choice is not None:
        os.environ[ENV] = choice
