"""The bench's XLM-R-large-shaped model: one random-weight Hugging Face checkpoint,
converted once to a TF Hub module pair, so beam-embed (TF), torch and onnxruntime
all run the SAME weights.

Shape as xlm-roberta-large's config.json: 24 layers, width 1024, 16 heads, FFN
4096, 250,002-row embedding, 514 positions. The tokenizer is a small sentencepiece
model trained on samples/corpus.txt (no download here): ids stay below its size,
the embedding table keeps XLM-R's 250,002 rows, so the embedding lookup and the
memory are XLM-R large's.

    cache/<key>/checkpoint/  config.json, model.safetensors, sentencepiece.bpe.model,
                             and the HF fast tokenizer saved from it (tokenizer.json ...)
    cache/<key>/module-r<converter revision>/  preprocessor/ + encoder/ (models.convert.convert_checkpoint)

Building takes minutes and about 5 GB of RAM at its peak, once: each directory is
written under a temporary name and renamed into place, so an interrupted build is
redone rather than used.

    PYTHONPATH=. .venv/bin/python -m bench.large_model [--layers 24 ...] [--check CORPUS]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "bench", ".cache")
REF_PY = os.environ.get("BEAM_EMBED_REF_PYTHON", os.path.join(ROOT, ".venv-ref", "bin", "python"))
SPM_VOCAB = 3000

LARGE = dict(layers=24, hidden=1024, heads=16, intermediate=4096)


def shape_key(layers: int, hidden: int, heads: int, intermediate: int, seed: int) -> str:
    return f"xlmr-large-shaped-L{layers}-H{hidden}-A{heads}-I{intermediate}-V250002-spm{SPM_VOCAB}-seed{seed}"


def sentencepiece_model() -> str:
    """The small sentencepiece model both XLM-R-shaped bench models use (trained once,
    single-threaded, so the same corpus gives the same model)."""
    spm_dir = os.path.join(CACHE, "spm")
    path = os.path.join(spm_dir, "sentencepiece.bpe.model")
    if os.path.isfile(path):
        return path
    import sentencepiece
    os.makedirs(spm_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".spm-", dir=spm_dir)
    sentencepiece.SentencePieceTrainer.train(
        input=os.path.join(ROOT, "samples", "corpus.txt"), model_prefix=os.path.join(staging, "sentencepiece.bpe"),
        model_type="unigram", vocab_size=SPM_VOCAB, character_coverage=1.0, num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    os.replace(os.path.join(staging, "sentencepiece.bpe.model"), path)
    shutil.rmtree(staging, ignore_errors=True)
    return path


def xlmr_config(layers: int, hidden: int, heads: int, intermediate: int):
    from models.config import EncoderConfig
    return EncoderConfig("xlm-roberta", vocab_size=250002, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=514,
                         type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1)


def hf_config_json(config) -> dict:
    """config.json as transformers writes it for XLM-R (what AutoModel and the ONNX
    export read), from the encoder's config."""
    c = config.to_dict()
    return {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
            "vocab_size": c["vocab_size"], "hidden_size": c["hidden_size"],
            "num_hidden_layers": c["num_hidden_layers"], "num_attention_heads": c["num_attention_heads"],
            "intermediate_size": c["intermediate_size"], "hidden_act": c["hidden_act"],
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": c["max_position_embeddings"], "type_vocab_size": c["type_vocab_size"],
            "initializer_range": 0.02, "layer_norm_eps": c["layer_norm_eps"], "pad_token_id": c["pad_token_id"],
            "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "absolute",
            "torch_dtype": "float32"}


def _write_checkpoint(config, seed: int, directory: str) -> None:
    from safetensors.numpy import save_file
    from models.random_weights import random_weights
    staging = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(directory))
    try:
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
            json.dump(hf_config_json(config), f, indent=2)
        shutil.copy(sentencepiece_model(), os.path.join(staging, "sentencepiece.bpe.model"))
        weights = random_weights(config, seed)  # HF names without the 'roberta.' prefix: AutoModel takes both
        save_file(weights, os.path.join(staging, "model.safetensors"))
        del weights
        gc.collect()
        # The HF fast tokenizer, converted from the sentencepiece file (fairseq's id offset
        # applied by transformers), saved so every reference contender loads the same one.
        subprocess.run([REF_PY, "-c", "import sys; from transformers import XLMRobertaTokenizer; "
                        "XLMRobertaTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])", staging],
                       check=True, env=dict(os.environ, PYTHONPATH=""))
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def ensure_large_model(layers: int = 24, hidden: int = 1024, heads: int = 16, intermediate: int = 4096,
                       seed: int = 0, cache: str = CACHE):
    """``(checkpoint_dir, ModuleDirs, config dict)`` of the cached model, built if missing."""
    from models.convert import convert_checkpoint
    from models.export import ModuleDirs
    root = os.path.join(cache, shape_key(layers, hidden, heads, intermediate, seed))
    from models.default_model import CONVERTER_REVISION
    # The module is keyed by the converter revision too: a new encoder graph converts anew.
    checkpoint = os.path.join(root, "checkpoint")
    dirs = ModuleDirs(os.path.join(root, f"module-r{CONVERTER_REVISION}"))
    config = xlmr_config(layers, hidden, heads, intermediate)
    os.makedirs(root, exist_ok=True)
    if not os.path.isfile(os.path.join(checkpoint, "model.safetensors")):
        print(f"building {checkpoint} (random weights, seed {seed})", flush=True)
        _write_checkpoint(config, seed, checkpoint)
    if not dirs.exists():
        print(f"converting to {dirs.root}", flush=True)
        convert_checkpoint(checkpoint, dirs.root)  # save_module_pair renames into place itself
    return checkpoint, dirs, config.to_dict()


def check_tokenizer(checkpoint: str, dirs, corpus: str, max_seq_length: int) -> int:
    """Assert the HF tokenizer saved in the checkpoint gives our preprocessor's ids on
    every document of ``corpus`` (special tokens and truncation included); returns
    the number of documents checked. A mismatch means the reference contenders would
    compute different sequences, and their speed and cosines would not compare."""
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401
    from bench.batch_plan import read_corpus
    docs = read_corpus(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ids.json")
        subprocess.run([REF_PY, os.path.join(ROOT, "bench", "hf_token_ids.py"), checkpoint, corpus,
                        str(max_seq_length), out], check=True, env=dict(os.environ, PYTHONPATH=ROOT))
        with open(out, encoding="utf-8") as f:
            theirs = json.load(f)
    preprocessor = hub.load(dirs.preprocessor)
    ours = preprocessor.tokenize(tf.constant(docs)).to_list()
    budget = max_seq_length - 2
    # RoBERTa packing: <s>=0 ... </s>=2 (models/packing.roberta_style).
    ours = [[0] + list(row[:budget]) + [2] for row in ours]
    bad = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if len(theirs) != len(ours) or bad:
        i = bad[0] if bad else min(len(ours), len(theirs))
        raise AssertionError(f"HF tokenizer and beam-embed's preprocessor differ on {len(bad)} of {len(docs)} "
                             f"documents; first at line {i}: {docs[i][:80]!r}")
    return len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=LARGE["layers"])
    parser.add_argument("--hidden", type=int, default=LARGE["hidden"])
    parser.add_argument("--heads", type=int, default=LARGE["heads"])
    parser.add_argument("--intermediate", type=int, default=LARGE["intermediate"])
    parser.add_argument("--check", metavar="CORPUS", help="also check the HF tokenizer's ids on this corpus")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    checkpoint, dirs, _ = ensure_large_model(args.layers, args.hidden, args.heads, args.intermediate)
    print(checkpoint)
    print(dirs.root)
    if args.check:
        print(f"tokenizer ids agree on {check_tokenizer(checkpoint, dirs, args.check, 512)} documents")


if __name__ == "__main__":
    main()
