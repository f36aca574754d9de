"""sentence-transformers on the same MiniLM weights (runs in .venv-ref, torch CPU).

    PYTHONPATH=. .venv-ref/bin/python bench/st_encode.py MODEL_DIR CORPUS [--save EMB.npy]

sentence-transformers' own batching (sorted by length, 32 per batch): the user's
path as its documentation shows it. With --save: float32 [docs, dim] in corpus order.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from bench.batch_plan import read_corpus  # stdlib only at import: fine in .venv-ref
from bench.contenders import peak_rss_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("corpus")
    parser.add_argument("--save", metavar="EMB.npy", help="float32 [docs, dim] embeddings in corpus order")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    docs = read_corpus(args.corpus)
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.encode(docs[:8])  # warm up outside the timed part
    start = time.perf_counter()
    embeddings = model.encode(docs, batch_size=32)  # returned in input order
    seconds = time.perf_counter() - start
    if args.save:
        np.save(args.save, np.asarray(embeddings, np.float32))
    lengths = [len(ids) for ids in model.tokenizer(docs, truncation=True,
                                                    max_length=model.max_seq_length)["input_ids"]]
    # encode() sorts by length (longest first) and pads each batch of 32 to its longest.
    ordered = sorted(lengths, reverse=True)
    computed = sum(max(ordered[i:i + 32]) * len(ordered[i:i + 32]) for i in range(0, len(ordered), 32))
    sys.stdout.write("\nRESULT " + json.dumps({"seconds": seconds, "docs": len(docs), "tokens": sum(lengths),
                                               "computed_tokens": computed, "peak_rss": peak_rss_bytes()}) + "\n")


if __name__ == "__main__":
    main()
