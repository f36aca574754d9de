"""The sentence-transformers-equivalent torch path on any HF checkpoint dir (runs in
.venv-ref, torch CPU): transformers' AutoModel + the checkpoint's HF fast tokenizer,
beam-embed's batch plan (the same padded shapes as every contender), mean pooling
over the attention mask, no normalisation; sentence-transformers' own
Transformer + Pooling modules compute exactly this.

    PYTHONPATH=. .venv-ref/bin/python bench/torch_encode.py CHECKPOINT_DIR CORPUS PLAN.json [--save EMB.npy]

Timed: tokenizing every document (truncated to the plan's max_seq_length) and
encoding the plan's batches. Prints ``RESULT {json}`` last.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from bench.batch_plan import read_corpus  # stdlib only at import: fine in .venv-ref
from bench.contenders import peak_rss_bytes


def padded_batch(ids: list[list[int]], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of ``ids`` right-padded to the plan's ``length``."""
    input_ids = np.full((len(ids), length), pad_id, np.int64)
    mask = np.zeros((len(ids), length), np.int64)
    for row, seq in enumerate(ids):
        if len(seq) > length:
            raise ValueError(f"a document has {len(seq)} tokens, more than its planned batch length {length}: "
                             "the HF tokenizer and beam-embed's preprocessor disagree")
        input_ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling: the sum over real tokens / their count."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("corpus")
    parser.add_argument("plan")
    parser.add_argument("--save", metavar="EMB.npy", help="float32 [docs, dim] embeddings in corpus order")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    with open(args.plan, encoding="utf-8") as f:
        plan = json.load(f)
    docs = read_corpus(args.corpus)
    if len(docs) != plan["docs"]:
        raise SystemExit(f"{args.plan} plans {plan['docs']} documents, {args.corpus} has {len(docs)}")
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModel.from_pretrained(args.checkpoint, dtype=torch.float32).eval()
    pad_id = tokenizer.pad_token_id
    with torch.inference_mode():  # warm up outside the timed part, as the others trace at load
        model(*padded_batch(tokenizer(docs[:2], truncation=True, max_length=16)["input_ids"], 16, pad_id))
    out = None
    start = time.perf_counter()
    ids = tokenizer(docs, truncation=True, max_length=plan["max_seq_length"])["input_ids"]
    with torch.inference_mode():
        for batch in plan["batches"]:
            input_ids, mask = padded_batch([ids[i] for i in batch["docs"]], batch["length"], pad_id)
            pooled = mean_pool(model(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask)
            if out is None:
                out = np.empty((len(docs), pooled.shape[1]), np.float32)
            out[batch["docs"]] = pooled.numpy()
    seconds = time.perf_counter() - start
    planned = sorted(i for b in plan["batches"] for i in b["docs"])
    if planned != list(range(len(docs))):
        raise SystemExit(f"{args.plan} does not cover every document of {args.corpus} exactly once")
    if args.save:
        np.save(args.save, out)
    computed = sum(len(b["docs"]) * b["length"] for b in plan["batches"])
    sys.stdout.write("\nRESULT " + json.dumps({
        "seconds": seconds, "docs": len(docs), "tokens": sum(len(x) for x in ids),
        "computed_tokens": computed, "peak_rss": peak_rss_bytes()}) + "\n")


if __name__ == "__main__":
    main()
