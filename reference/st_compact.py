"""sentence-transformers' own compact embeddings, for beam-embed's parity tests.

Runs in .venv-ref (torch, sentence-transformers); reads and writes files only.

    .venv-ref/bin/python reference/st_compact.py quantize --inputs in.npz --out out.npz
        in.npz: ``vectors`` [n, D] float32, ``ranges`` [2, D] float32 (optional),
        ``calibration`` [m, D] float32 (optional). out.npz: ``binary``, ``ubinary``
        (quantize_embeddings on ``vectors``), ``int8``/``uint8`` with ``ranges``, and
        ``int8_calibrated``/``uint8_calibrated`` with ``calibration_embeddings``.
    .venv-ref/bin/python reference/st_compact.py encode --model-dir DIR --texts texts.json \\
        --truncate-dim D [--prompt STR] --out emb.npy
        encode(texts, truncate_dim=D, normalize_embeddings=True, prompt=STR).
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def cmd_quantize(args):
    from sentence_transformers.util.quantization import quantize_embeddings
    with np.load(args.inputs) as inputs:
        data = {k: inputs[k] for k in inputs.files}
    vectors = data["vectors"]
    out = {p: quantize_embeddings(vectors, precision=p) for p in ("binary", "ubinary")}
    if "ranges" in data:
        for p in ("int8", "uint8"):
            out[p] = quantize_embeddings(vectors, precision=p, ranges=data["ranges"])
    if "calibration" in data:
        for p in ("int8", "uint8"):
            out[f"{p}_calibrated"] = quantize_embeddings(
                vectors, precision=p, calibration_embeddings=data["calibration"])
    np.savez(args.out, **out)


def cmd_encode(args):
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(2)
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    model = SentenceTransformer(args.model_dir, device="cpu")
    np.save(args.out, model.encode(texts, batch_size=32, convert_to_numpy=True,
                                   truncate_dim=args.truncate_dim, normalize_embeddings=True,
                                   prompt=args.prompt))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("quantize")
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_quantize)
    p = sub.add_parser("encode")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--truncate-dim", type=int)
    p.add_argument("--prompt")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_encode)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
