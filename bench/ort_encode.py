"""The onnxruntime contender: an ONNX export of the checkpoint on beam-embed's batch plan.

Runs in .venv-ref (onnxruntime CPU, transformers' fast tokenizer, numpy):

    PYTHONPATH=. .venv-ref/bin/python bench/ort_encode.py CHECKPOINT_DIR CORPUS PLAN.json \
        [--save EMB.npy] [--graph optimized|plain] [--cache-dir DIR]

What a speed-minded CPU user would run: the graph of bench/onnx_export.py (exported
once, cached; ``optimized`` by default, see there), an InferenceSession with
ORT_ENABLE_ALL, intra-op threads = os.cpu_count(), sequential execution. The timed
part: Hugging Face's fast tokenizer on all documents (truncated to the plan's
max_seq_length), then the plan's batches (bench/batch_plan.py), each padded to its
``length``, and mean pooling over the attention mask in numpy, as
sentence-transformers pools (no normalisation).

The plan's lengths come from beam-embed's tokenizer. Where Hugging Face's tokenizer
gives a document more tokens than its batch's ``length`` (the two differ on a few
characters, see /work/shared/FACTS.md), that batch is padded to its longest
document instead, so every document is embedded whole; ``widened_batches`` counts
them, and ``computed_tokens`` counts what was computed.

Last line: ``RESULT {json}`` with seconds, docs, tokens (real, HF's), computed_tokens,
peak_rss, and graph, exported (whether this run exported the graph), threads,
widened_batches. With --save: float32 [docs, dim] in corpus order.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import onnx_export  # noqa: E402
from bench.batch_plan import read_corpus  # noqa: E402  (stdlib at import)
from bench.contenders import peak_rss_bytes  # noqa: E402  (stdlib at import)


class PlanError(ValueError):
    """The plan does not describe this corpus."""


def read_plan(path: str, n_docs: int) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
        batches = [(list(map(int, b["docs"])), int(b["length"])) for b in plan["batches"]]
        plan["max_seq_length"] = int(plan["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PlanError(f"the plan {path} is not a batch plan (bench/batch_plan.py): {e}") from None
    if plan.get("docs") != n_docs:
        raise PlanError(f"the plan {path} is for {plan.get('docs')} documents, the corpus has {n_docs}")
    if sorted(i for docs, _ in batches for i in docs) != list(range(n_docs)):
        raise PlanError(f"the plan {path} does not hold every document of the corpus exactly once")
    if any(not docs or length < 1 for docs, length in batches):
        raise PlanError(f"the plan {path} has an empty batch or a length below 1")
    return plan


def session(graph: str):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean: sum of the real tokens' vectors / their count."""
    weights = mask.astype(np.float32)
    summed = np.matmul(weights[:, None, :], hidden)[:, 0]
    return summed / np.maximum(weights.sum(1, keepdims=True), 1e-9)


class Encoder:
    """The batches of a plan through one session."""

    def __init__(self, sess, inputs: list[str], pad_id: int):
        self.sess = sess
        self.inputs = inputs
        self.pad_id = pad_id

    def batch(self, rows: list[list[int]], length: int) -> tuple[np.ndarray, int]:
        """Mean-pooled vectors of ``rows`` padded to ``length`` (or to the longest row)."""
        length = max(length, max(len(r) for r in rows))
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for j, row in enumerate(rows):
            ids[j, :len(row)] = row
            mask[j, :len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.sess.run(["last_hidden_state"], feeds)[0]
        return mean_pool(hidden, mask), length


def encode(checkpoint: str, docs: list[str], plan: dict, sess, inputs: list[str]) -> tuple[np.ndarray, dict]:
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    encoder = Encoder(sess, inputs, tokenizer.pad_token_id)
    # Warm-up outside the timed part (the arena's first allocations), as the other
    # contenders trace or warm up at load.
    first = plan["batches"][0]
    warm = tokenizer([docs[i] for i in first["docs"]], truncation=True, max_length=plan["max_seq_length"])
    encoder.batch(warm["input_ids"], first["length"])

    start = time.perf_counter()
    ids = tokenizer(docs, truncation=True, max_length=plan["max_seq_length"],
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    vectors = None
    computed = widened = 0
    for batch in plan["batches"]:
        pooled, length = encoder.batch([ids[i] for i in batch["docs"]], batch["length"])
        if vectors is None:
            vectors = np.empty((len(docs), pooled.shape[1]), dtype=np.float32)
        vectors[batch["docs"]] = pooled
        computed += length * len(batch["docs"])
        widened += length > batch["length"]
    seconds = time.perf_counter() - start
    return vectors, {"seconds": seconds, "docs": len(docs), "tokens": sum(len(r) for r in ids),
                     "computed_tokens": computed, "widened_batches": int(widened)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("corpus")
    parser.add_argument("plan")
    parser.add_argument("--save", default=None, help="write the embeddings here (.npy, corpus order)")
    parser.add_argument("--graph", choices=onnx_export.GRAPHS, default="optimized")
    parser.add_argument("--cache-dir", default=None,
                        help="where exports are cached (default $BEAM_EMBED_ONNX_CACHE or bench/.cache/onnx)")
    args = parser.parse_args(argv)
    try:
        if not os.path.isfile(args.corpus):
            raise PlanError(f"the corpus {args.corpus} does not exist")
        docs = read_corpus(args.corpus)
        if not docs:
            raise PlanError(f"the corpus {args.corpus} has no non-empty line")
        plan = read_plan(args.plan, len(docs))
        graph, exported = onnx_export.ensure_graph(args.checkpoint, args.cache_dir, args.graph)
    except (PlanError, onnx_export.CheckpointError) as e:
        sys.stderr.write(f"ort_encode: {e}\n")
        sys.exit(2)
    with open(os.path.join(os.path.dirname(os.path.dirname(graph)), "export.json")) as f:
        inputs = json.load(f)["inputs"]
    sess = session(graph)
    vectors, result = encode(args.checkpoint, docs, plan, sess, inputs)
    if args.save:
        np.save(args.save, vectors)
    result.update(graph=args.graph, exported=exported, threads=os.cpu_count(), peak_rss=peak_rss_bytes())
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
