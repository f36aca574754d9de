"""sentence-transformers on the same MiniLM weights (runs in .venv-ref, torch CPU).

    PYTHONPATH=. .venv-ref/bin/python bench/st_encode.py MODEL_DIR CORPUS
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

from bench.contenders import peak_rss_bytes  # stdlib only at import: fine in .venv-ref


def main(model_dir: str, corpus: str) -> None:
    torch.set_num_threads(2)
    with open(corpus, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f if line.strip()]
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(docs[:8])  # warm up outside the timed part
    start = time.perf_counter()
    model.encode(docs, batch_size=32)
    seconds = time.perf_counter() - start
    lengths = [len(ids) for ids in model.tokenizer(docs, truncation=True,
                                                    max_length=model.max_seq_length)["input_ids"]]
    # encode() sorts by length (longest first) and pads each batch of 32 to its longest.
    ordered = sorted(lengths, reverse=True)
    computed = sum(max(ordered[i:i + 32]) * len(ordered[i:i + 32]) for i in range(0, len(ordered), 32))
    sys.stdout.write("\nRESULT " + json.dumps({"seconds": seconds, "docs": len(docs), "tokens": sum(lengths),
                                               "computed_tokens": computed, "peak_rss": peak_rss_bytes()}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
