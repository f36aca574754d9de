"""Per-batch cost of the shared path: a batch to a shared copy and its vectors back.

``python -m bench.shared_overhead``: beam-embed's full batches on a GPU, where shared
copies are the default, of three length classes (8,192-token budget: 256 x 16,
128 x 64, 32 x 256 tokens; MiniLM's 384-wide float32 vectors
back) sent through Beam's multi_process_shared proxy (``always_proxy``, as
RunInference calls a shared copy) to a ServedEncoder whose encoder returns zeros at
once: what is timed is the shared path alone (wire_pieces, pickling, the local
socket, the server thread's hand-off), not the encoder, so the figure holds on a
busy machine. RunInference adds one more round trip per batch (its model-status
check, ``is_valid_tag``), timed as ``status_rpc_ms``. Prints medians in ms.
"""
from __future__ import annotations

import json
import statistics
import time
import uuid

import numpy as np

DIM = 384


class _Instant:
    def embed(self, pieces, seq_length=None):
        return np.zeros((len(pieces), DIM), np.float32)


class _Status:
    def is_valid_tag(self, tag):
        return True


def _median_ms(call, reps: int = 200) -> float:
    call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    from transforms.encode import ServedEncoder, wire_pieces
    from transforms.tokenize import Piece

    def shared(make):
        return MultiProcessShared(make, tag=f"bench-{uuid.uuid4().hex}", always_proxy=True).acquire()
    proxy, status = shared(lambda: ServedEncoder(_Instant())), shared(_Status)
    results = {"status_rpc_ms": round(_median_ms(lambda: status.is_valid_tag("x")), 3)}
    for size, length in ((256, 16), (128, 64), (32, 256)):
        ids = tuple(range(2000, 2000 + length - 2))
        pieces = [Piece(f"doc-{i}", "bench", (ids,), length, False, 0, 1, None, None, "x" * 100)
                  for i in range(size)]
        results[f"batch_{size}x{length}_ms"] = round(_median_ms(lambda: proxy.embed(wire_pieces(pieces))), 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
