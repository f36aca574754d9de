"""One benchmark contender per process: ``python -m bench.contenders NAME ...``.

Each prints one JSON line: seconds (the timed part), docs, tokens (real),
computed_tokens (real + padding), and for the ceiling the padded FLOPs.
The parent process measures peak RSS with os.wait4.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from transforms.constants import CPU_BATCH_TOKENS  # imports nothing


def peak_rss_bytes() -> int:
    """This process's peak RSS since exec (VmHWM). Not ru_maxrss: Linux keeps that
    across exec, so it would include the forking parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _read(corpus: str) -> list[str]:
    from bench.batch_plan import read_corpus  # stdlib at import, like this module
    return read_corpus(corpus)


def _load(preprocessor: str, encoder: str):
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401
    return hub.load(preprocessor), hub.load(encoder)


def ceiling(args) -> dict:
    """The encoder alone, in a tight loop over batches tokenized, length-bucketed and
    packed beforehand (beam-embed's own batch plan and shapes), with the same mean
    pooling."""
    import tensorflow as tf
    from bench.batch_plan import plan
    from transforms.encode import encoder_call
    from transforms.pooling import pool
    preprocessor, encoder = _load(args.preprocessor, args.encoder)
    call = encoder_call(encoder, args.precision, "/CPU:0")  # what beam-embed calls
    docs = _read(args.corpus)
    batches, shape = plan(preprocessor, docs, args.max_seq_length, args.batch_tokens, args.max_batch_size)
    pieces = [p for batch in batches for p in batch]
    packed = []
    for batch in batches:
        segment = tf.ragged.constant([p.segments[0] for p in batch], dtype=tf.int32)
        length = shape.batch_length(batch)
        packed.append(preprocessor.bert_pack_inputs([segment], seq_length=length))

    @tf.function(input_signature=[{k: tf.TensorSpec([None, None], tf.int32) for k in packed[0]}])
    def embed(inputs):
        return pool(call(inputs), inputs["input_mask"], "mean", None)

    embed(packed[0])  # trace outside the timed loop, as beam-embed traces at load
    start = time.perf_counter()
    for inputs in packed:
        embed(inputs).numpy()
    seconds = time.perf_counter() - start
    real = sum(p.n_tokens for p in pieces)
    computed = sum(int(tf.size(x["input_mask"])) for x in packed)
    shapes = [tuple(x["input_mask"].shape) for x in packed]
    return {"seconds": seconds, "docs": len(docs), "tokens": real, "computed_tokens": computed,
            "batch_shapes": shapes}


def beam_tfhub(args) -> dict:
    """Beam's stock path: MLTransform + TensorflowHubTextEmbeddings (pads to 128,
    pooled_output, reloads the preprocessor on every batch)."""
    import tempfile

    import apache_beam as beam
    from apache_beam.ml.transforms.base import MLTransform
    from apache_beam.ml.transforms.embeddings.tensorflow_hub import TensorflowHubTextEmbeddings
    docs = _read(args.corpus)
    artifacts = tempfile.mkdtemp(prefix="bench-mltransform-")
    count_file = os.path.join(artifacts, "count")
    start = time.perf_counter()
    with beam.Pipeline(runner="FnApiRunner") as p:
        (p
         | beam.io.ReadFromText(args.corpus)
         | beam.Map(lambda line: {"text": line})
         | MLTransform(write_artifact_location=artifacts).with_transform(
             TensorflowHubTextEmbeddings(columns=["text"], hub_url=args.encoder,
                                         preprocessing_url=args.preprocessor))
         | beam.Map(lambda row: len(row["text"]))
         | beam.combiners.Count.Globally()
         | beam.io.WriteToText(count_file, shard_name_template=""))
    seconds = time.perf_counter() - start
    with open(count_file) as f:
        assert int(f.read()) == len(docs), "the stock path lost documents"
    return {"seconds": seconds, "docs": len(docs), "computed_tokens": 128 * len(docs)}


def beam_embed(args, model_copies: str = "0") -> dict:
    """beam-embed end to end through its CLI (in this process, FnApiRunner), its
    encoder this process's own (``--model_copies 0``, what ``auto`` means on a CPU)."""
    import tempfile

    from pipeline.main import main
    out = os.path.join(tempfile.mkdtemp(prefix="bench-beam-embed-"), "emb")
    argv = [f"--input={args.corpus}", f"--output={out}", "--runner=FnApiRunner",
            f"--preprocessor={args.preprocessor}", f"--encoder={args.encoder}",
            f"--max_seq_length={args.max_seq_length}", f"--batch_tokens={args.batch_tokens}",
            f"--max_batch_size={args.max_batch_size}", f"--precision={args.precision}",
            f"--model_copies={model_copies}"]
    start = time.perf_counter()
    assert main(argv) == 0
    process_seconds = time.perf_counter() - start
    with open(f"{out}-summary.json") as f:
        summary = json.load(f)
    return {"seconds": summary["wall_seconds"], "process_seconds": process_seconds,
            "docs": summary["embedded"], "tokens": summary["tokens"],
            "computed_tokens": round(summary["tokens"] / summary["padding_ratio"]),
            "output": out}


def beam_embed_shared(args) -> dict:
    """beam_embed with ``--model_copies 1``: every batch goes to the encoder through
    Beam's multi_process_shared proxy (pickled token ids out, vectors back), as SDK
    processes call a shared copy; here the copy lives in the same process, so the
    difference to beam_embed is the proxy's cost alone."""
    return beam_embed(args, model_copies="1")


CONTENDERS = {"ceiling": ceiling, "beam_tfhub": beam_tfhub, "beam_embed": beam_embed,
              "beam_embed_shared": beam_embed_shared}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(CONTENDERS))
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--preprocessor", required=True)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--max_seq_length", type=int, default=512)
    # beam-embed's own default on a CPU, which this bench runs on; the plan uses it too.
    parser.add_argument("--batch_tokens", type=int, default=CPU_BATCH_TOKENS)
    parser.add_argument("--max_batch_size", type=int, default=256)
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args()
    import logging
    logging.disable(logging.WARNING)
    result = CONTENDERS[args.name](args)
    result["peak_rss"] = peak_rss_bytes()
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
