"""Per-batch cost of calling the encoder through Beam's multi_process_shared proxy.

``python -m bench.shared_overhead``: the same TextEncoder (the embedded MiniLM, on the
CPU) called directly and through a proxy (``always_proxy``, as RunInference calls a
shared copy), on the batch shapes beam-embed forms; prints the median milliseconds
per batch of each and their difference. The proxy's server here is in this process,
so the figure is pickling, the local socket and the server thread's hand-off; from
another SDK process it is the same path.
"""
from __future__ import annotations

import json
import statistics
import time
import uuid


def main() -> None:
    import logging
    logging.disable(logging.WARNING)
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    from models.default_model import default_handle
    from transforms.encode import (EmbeddingSpec, RuntimeOptions, ServedEncoder, text_encoder,
                                   wire_pieces)
    from transforms.tokenize import Piece
    encoder = text_encoder(default_handle("preprocessor"), default_handle("encoder"),
                           EmbeddingSpec(max_seq_length=256), RuntimeOptions())
    proxy = MultiProcessShared(lambda: ServedEncoder(encoder), tag=f"bench-{uuid.uuid4().hex}",
                               always_proxy=True).acquire()
    results = {}
    for size, length in ((256, 16), (128, 64), (32, 256)):  # full batches of 3 length classes
        ids = tuple(range(2000, 2000 + length - 2))
        pieces = [Piece(f"doc-{i}", "bench", (ids,), length, False, 0, 1, None, None, "x" * 100)
                  for i in range(size)]
        direct, proxied = [], []
        encoder.embed(pieces), proxy.embed(wire_pieces(pieces))  # trace, warm up
        for _ in range(15):
            start = time.perf_counter()
            encoder.embed(pieces)
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            proxy.embed(wire_pieces(pieces))
            proxied.append(time.perf_counter() - start)
        d, p = statistics.median(direct) * 1e3, statistics.median(proxied) * 1e3
        results[f"{size}x{length}"] = {"direct_ms": round(d, 2), "proxy_ms": round(p, 2),
                                       "overhead_ms": round(p - d, 2), "overhead": round(p / d - 1, 4)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
