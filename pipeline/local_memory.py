"""A local run's process keeps its peak memory from growing with the corpus.

A local run holds the runner, its two workers (pipeline/local_workers.py) and the
encoder in one process, so what the process keeps after a stage or a batch adds
up over a long run. Two settings, for local runs only (on Dataflow the runner is
elsewhere and the SDK processes are the service's):

* **glibc's malloc arenas, at most two.** glibc gives each thread that allocates
  while another holds an arena a new arena, up to eight per core, and memory freed
  in one arena is reused by none of the others; the worker threads, gRPC's and
  TensorFlow's each left their own high-water mark. ``mallopt(M_ARENA_MAX, 2)``
  before the workers start (arenas are made per thread, on its first
  allocation), unless the environment sets ``MALLOC_ARENA_MAX`` itself.
* **Smaller messages between the runner and its workers.** Beam's gRPC data
  channel coalesces up to 10 MB of elements into one message
  (``data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD``, which no option sets). Each
  such message is copied several times on its way (protobuf, gRPC's buffers, the
  decoded elements), and buffers of 10 MB in glibc's heap are the ones it reuses
  worst. Here it is 1 MB: 40,000 MiniLM documents through the pipeline with the
  encoder replaced by a constant peaked at 1,374 -> 1,280 MiB. A larger element
  still goes alone in one message.

Measured with the encoder's large-batch slots (transforms/encode.py), bench's
MiniLM corpus at 1x and 10x (4,000 and 40,000 documents, two local workers,
2-core AMD EPYC with AVX-512; one run each, and peaks vary by some 80 MiB from
run to run, with the moments two full batches meet): peak RSS 1,423 and 1,861
MiB (10x / 1x: 1.31) before, 1,387 and 1,667 MiB (1.20) with them; the 10x run in
183 s (181-194 s before). What was left of the growth was mostly the 10x run's
full 8,192-token batches, two at once, whose activations the 1x run never held;
a CPU's batches are 4,096 tokens since (transforms/batching.py:
default_batch_tokens), and the 10x run peaked at 1,476-1,478 MiB.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2
DATA_MESSAGE_BYTES = 1 << 20


def cap_malloc_arenas() -> bool:
    """``mallopt(M_ARENA_MAX, ARENAS)`` on glibc; False where it did nothing (another
    C library, or MALLOC_ARENA_MAX set by the user, which glibc has applied)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, ARENAS) == 1


def smaller_data_messages() -> bool:
    """Beam's in-process gRPC data channel sends at most DATA_MESSAGE_BYTES of
    elements per message (see the module's docstring); False if Beam no longer has
    the setting, which then stays Beam's."""
    from apache_beam.runners.worker import data_plane
    if not isinstance(getattr(data_plane, "_DEFAULT_SIZE_FLUSH_THRESHOLD", None), int):
        return False
    data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD = min(data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD,
                                                   DATA_MESSAGE_BYTES)
    return True


def apply() -> None:
    cap_malloc_arenas()
    smaller_data_messages()
