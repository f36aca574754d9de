"""The batches every contender runs: beam-embed's own plan, written down once.

beam-embed tokenizes each document, truncates it to ``max_seq_length`` and groups
the pieces into length-class batches within a token budget
(transforms/batching.plan_batches). The ceiling runs exactly those batches; the
reference-venv contenders (onnxruntime, torch) read them from a JSON file, so every
contender computes the same padded shapes:

    {"max_seq_length": 256, "docs": 4000,
     "batches": [{"docs": [17, 3, ...], "length": 36}, ...]}

``docs`` are 0-based indices into the corpus's non-empty lines (bench.contenders
reads them the same way), ``length`` is the padded length of that batch, special
tokens included.

    PYTHONPATH=. .venv/bin/python -m bench.batch_plan PREPROCESSOR CORPUS PLAN.json \
        [--max_seq_length 256] [--batch_tokens 4096] [--max_batch_size 256]
"""
from __future__ import annotations

import argparse
import json

from transforms.constants import CPU_BATCH_TOKENS  # imports nothing


def read_corpus(corpus: str) -> list[str]:
    with open(corpus, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def plan(preprocessor, docs: list[str], max_seq_length: int, batch_tokens: int, max_batch_size: int):
    """``(batches, shape)``: the Piece batches of beam-embed's plan for ``docs``
    (a Piece's doc_id is its index as a string) and the BatchShape that padded them."""
    import tensorflow as tf
    from transforms.batching import BatchShape, plan_batches
    from transforms.records import Piece
    ids = preprocessor.tokenize(tf.constant(docs))
    budget = max_seq_length - 2
    pieces = [Piece(str(i), "", (tuple(row[:budget]),), min(len(row), budget) + 2, False, 0, 1, None, None)
              for i, row in enumerate(ids.to_list())]
    shape = BatchShape(batch_tokens, max_batch_size, max_seq_length)
    batches, _ = plan_batches(pieces, shape)
    return batches, shape


def write_plan(preprocessor_dir: str, corpus: str, path: str, max_seq_length: int,
               batch_tokens: int, max_batch_size: int) -> dict:
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401  (the preprocessor's ops)
    docs = read_corpus(corpus)
    batches, shape = plan(hub.load(preprocessor_dir), docs, max_seq_length, batch_tokens, max_batch_size)
    written = {"max_seq_length": max_seq_length, "docs": len(docs),
               "batches": [{"docs": [int(p.doc_id) for p in batch],
                            "length": shape.batch_length(batch)}
                           for batch in batches]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(written, f)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preprocessor")
    parser.add_argument("corpus")
    parser.add_argument("path")
    parser.add_argument("--max_seq_length", type=int, default=256)
    parser.add_argument("--batch_tokens", type=int, default=CPU_BATCH_TOKENS)
    parser.add_argument("--max_batch_size", type=int, default=256)
    args = parser.parse_args()
    written = write_plan(args.preprocessor, args.corpus, args.path, args.max_seq_length,
                         args.batch_tokens, args.max_batch_size)
    print(f"{len(written['batches'])} batches for {written['docs']} documents -> {args.path}")


if __name__ == "__main__":
    main()
