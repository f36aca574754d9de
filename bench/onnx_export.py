"""ONNX export of a Hugging Face encoder checkpoint, cached, for the onnxruntime contender.

Runs in .venv-ref (torch, transformers, onnx, onnxruntime; no TensorFlow):

    PYTHONPATH=. .venv-ref/bin/python bench/onnx_export.py CHECKPOINT_DIR \
        [--cache-dir DIR] [--graph optimized|plain]

prints the path of the graph. CHECKPOINT_DIR is a Hugging Face checkpoint folder
(config.json, model.safetensors, tokenizer files) of a BERT or XLM-R/RoBERTa
encoder. The graph takes ``input_ids``, ``attention_mask`` (and ``token_type_ids``
where the tokenizer produces them), int64 ``[batch, sequence]``, both axes dynamic,
and returns ``last_hidden_state``; the weights always sit in one external data file
(``*.onnx.data``), which a > 2 GB model needs anyway.

Two graphs, both cached:
  plain      torch.onnx.export's graph; onnxruntime applies its own ORT_ENABLE_ALL
             optimizations when it loads it.
  optimized  the plain graph through onnxruntime.transformers.optimizer
             (model_type "bert", which covers RoBERTa/XLM-R too): fused
             EmbedLayerNormalization, Attention, BiasGelu, SkipLayerNormalization.
             Same float32 arithmetic, no quantization, no GELU approximation.
             Measured on MiniLM (400 documents, beam-embed's plan, the graphs'
             batches interleaved in one process, 4 passes, 2 shared cores):
             optimized 86.2 s, plain 86.9 s, the dynamo export 91.3 s; the same
             embeddings to 1e-6. ORT_ENABLE_ALL alone leaves the plain graph's
             attention unfused (~300 nodes against ~46), yet it is as fast on this
             CPU at these lengths. The optimized graph is the default.

Which exporter, and why the wrapper below:
  * The dynamo exporter (torch.onnx.export(dynamo=True), torch 2.13) gives a correct
    graph, but the optimizer fuses no attention in it, and it takes ~30 s for MiniLM.
  * The TorchScript exporter (dynamo=False) on transformers 5's own mask code gives a
    WRONG graph: the mask's shapes are traced as constants of the example batch
    (errors ~2 on other shapes). Passing a ready 4-D additive mask avoids that code.
  * The mask is built the way transformers 4 did (expand, 1 - mask, masked_fill with
    the dtype's minimum): that is the pattern the optimizer's attention fusion
    recognises, with the eager attention (SDPA's graph does not fuse).

The cache directory is ``--cache-dir``, else $BEAM_EMBED_ONNX_CACHE, else
bench/.cache/onnx/ (gitignored). Each export lives in a folder named by a key over
the checkpoint's config.json, every weight file's name, size, mtime and first MiB,
the torch/onnxruntime versions and EXPORT_REVISION below, so a changed checkpoint
(or exporter) exports again and an unchanged one never does. An export is written
to a temporary folder and renamed into place, so a killed export leaves no
half-written graph behind that a later run would trust.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile

# Bump when the exported graph changes for the same checkpoint (wrapper, opset,
# optimizer options): old exports then stop matching.
EXPORT_REVISION = 1
OPSET = 17
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(ROOT, "bench", ".cache", "onnx")
GRAPHS = ("optimized", "plain")
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model*.bin.index.json")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class CheckpointError(ValueError):
    """The checkpoint folder cannot be exported (missing files, unknown model)."""


def cache_dir(given: str | None = None) -> str:
    return given or os.environ.get("BEAM_EMBED_ONNX_CACHE") or DEFAULT_CACHE


def weight_files(checkpoint: str) -> list[str]:
    files = sorted({f for pattern in WEIGHT_PATTERNS for f in glob.glob(os.path.join(checkpoint, pattern))})
    if not files:
        raise CheckpointError(f"no weights (model.safetensors or pytorch_model.bin) in {checkpoint}")
    return files


def cache_key(checkpoint: str) -> str:
    """Changes when the checkpoint's config or any weight file changes, or the exporter."""
    from importlib.metadata import version  # not importing torch: seconds on a cache hit
    config = os.path.join(checkpoint, "config.json")
    if not os.path.isfile(config):
        raise CheckpointError(f"no config.json in {checkpoint}: not a Hugging Face checkpoint folder")
    h = hashlib.sha256(f"rev{EXPORT_REVISION} opset{OPSET} torch{version('torch')} "
                       f"ort{version('onnxruntime')} transformers{version('transformers')}\n".encode())
    with open(config, "rb") as f:
        h.update(f.read())
    for path in weight_files(checkpoint):
        stat = os.stat(path)
        # Size and mtime catch a rewritten file cheaply; the first MiB catches a copy
        # that kept the mtime (cp -p) of a different checkpoint of the same shape.
        h.update(f"{os.path.basename(path)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def model_inputs(checkpoint: str) -> list[str]:
    """What the checkpoint's tokenizer feeds the model, in the graph's input order."""
    from transformers import AutoTokenizer
    names = AutoTokenizer.from_pretrained(checkpoint).model_input_names
    return [n for n in MODEL_INPUTS if n in names]


def _wrapper(model, inputs: list[str]):
    import torch

    class LastHiddenState(torch.nn.Module):
        """The model with its mask built here (see the module docstring for why)."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            batch, length = attention_mask.shape
            expanded = attention_mask[:, None, None, :].expand(batch, 1, length, length).to(torch.float32)
            inverted = 1.0 - expanded
            additive = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(torch.float32).min)
            extra = {"token_type_ids": token_type_ids} if "token_type_ids" in inputs else {}
            return self.model(input_ids=input_ids, attention_mask=additive, **extra).last_hidden_state

    return LastHiddenState().eval()


def export_plain(checkpoint: str, path: str) -> dict:
    """torch.onnx.export (TorchScript exporter) of the checkpoint to ``path``."""
    import onnx
    import torch
    from transformers import AutoConfig, AutoModel
    config = AutoConfig.from_pretrained(checkpoint)
    if config.model_type not in ("bert", "roberta", "xlm-roberta"):
        raise CheckpointError(f"model_type {config.model_type!r} in {checkpoint}: "
                              f"the export knows bert, roberta and xlm-roberta")
    inputs = model_inputs(checkpoint)
    model = AutoModel.from_pretrained(checkpoint, attn_implementation="eager", add_pooling_layer=False).eval()
    wrapped = _wrapper(model, inputs)
    # Example ids away from the pad id (XLM-R's position ids count non-pad tokens).
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    args = tuple(example[n] for n in inputs)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*inputs, "last_hidden_state"]}
    raw = path + ".raw.onnx"
    with torch.no_grad():
        torch.onnx.export(wrapped, args, raw, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=["last_hidden_state"], dynamic_axes=axes, do_constant_folding=True)
    # One external data file whatever the size (the exporter writes one file per
    # tensor above 2 GB, and inline below).
    graph = onnx.load(raw)
    onnx.save_model(graph, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data", size_threshold=1024)
    for leftover in os.listdir(os.path.dirname(path)):
        if leftover not in (os.path.basename(path), os.path.basename(path) + ".data"):
            os.remove(os.path.join(os.path.dirname(path), leftover))
    return {"inputs": inputs, "num_heads": config.num_attention_heads, "hidden_size": config.hidden_size}


def optimize(plain: str, path: str, meta: dict) -> dict:
    """onnxruntime.transformers.optimizer's BERT fusions of ``plain`` into ``path``."""
    from onnxruntime.transformers.optimizer import optimize_model
    model = optimize_model(plain, model_type="bert", num_heads=meta["num_heads"], hidden_size=meta["hidden_size"])
    model.save_model_to_file(path, use_external_data_format=True)
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def _in_child(function, *args):
    """``function(*args)`` in a fresh process. Exporting and optimizing the 2.2 GB
    XLM-R-large shape in one process peaked at 16 GB RSS (8 min on this loaded
    machine); neither step's peak, nor the memory Python keeps after it, may add
    to the other's or count in the peak RSS of the contender that called them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _build(checkpoint: str, final: str) -> None:
    """Export (and optimize) into a temporary sibling of ``final``, then rename it."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        os.makedirs(os.path.join(work, "plain"))
        os.makedirs(os.path.join(work, "optimized"))
        meta = _in_child(export_plain, checkpoint, os.path.join(work, "plain", "model.onnx"))
        meta["fused"] = _in_child(optimize, os.path.join(work, "plain", "model.onnx"),
                                  os.path.join(work, "optimized", "model.onnx"), meta)
        meta["checkpoint"] = os.path.abspath(checkpoint)
        meta["export_revision"] = EXPORT_REVISION
        with open(os.path.join(work, "export.json"), "w") as f:
            json.dump(meta, f, indent=1)
        try:
            os.rename(work, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "export.json")):
                raise
            # Another process finished the same export first: its copy is as good.
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_graph(checkpoint: str, directory: str | None = None, graph: str = "optimized") -> tuple[str, bool]:
    """``(path of the graph's model.onnx, whether this call exported it)``."""
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, not {graph!r}")
    if not os.path.isdir(checkpoint):
        raise CheckpointError(f"checkpoint folder {checkpoint} does not exist")
    final = os.path.join(cache_dir(directory), f"{os.path.basename(os.path.normpath(checkpoint))}-{cache_key(checkpoint)}")
    exported = not os.path.isfile(os.path.join(final, "export.json"))
    if exported:
        _build(checkpoint, final)
    return os.path.join(final, graph, "model.onnx"), exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--graph", choices=GRAPHS, default="optimized")
    args = parser.parse_args()
    try:
        path, exported = ensure_graph(args.checkpoint, args.cache_dir, args.graph)
    except CheckpointError as e:
        sys.stderr.write(f"onnx_export: {e}\n")
        sys.exit(2)
    print(path, "(exported)" if exported else "(cached)")


if __name__ == "__main__":
    main()
