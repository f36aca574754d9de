"""``python -m bench.compact``: what int8 and binary vectors cost in recall, and save in bytes.

The bench corpus (bench/corpus.py, same seed) is embedded three times by the
beam-embed CLI with the default model (MiniLM, --normalize): float32, int8 (its own
calibration, a seeded sample) and binary. The first ``--queries`` documents are the
queries; each one's 10 nearest other documents are found by brute force:

  float32  cosine (dot product of unit vectors): the ground truth
  int8     dot product of the dequantized vectors (calibration ranges from the
           output's own -calibration.json, as a reader would do)
  binary   Hamming distance of the packed bits

recall@10 is the share of the float32 top 10 found in the quantized top 10, averaged
over queries. Bytes per row: the stored vector's raw size, and the Parquet files'
size over the rows (id, n_tokens, truncated included). Writes bench/compact.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = ("float32", "int8", "binary")
K = 10


def _embed(corpus: str, out: str, dtype: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-m", "pipeline", f"--input={corpus}", f"--output={out}",
                    "--runner=FnApiRunner", "--normalize", f"--embedding_dtype={dtype}"],
                   check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def _read(prefix: str):
    import pyarrow.parquet as pq
    files = sorted(glob.glob(f"{prefix}-*-of-*.parquet"))
    table = pq.read_table(files, columns=["id", "embedding"]) if len(files) == 1 else None
    if table is None:
        import pyarrow as pa
        table = pa.concat_tables(pq.read_table(f, columns=["id", "embedding"]) for f in files)
    ids = table.column("id").to_pylist()
    column = table.column("embedding").combine_chunks()
    return ids, column, sum(os.path.getsize(f) for f in files)


def _top_k(scores: np.ndarray, self_index: np.ndarray) -> np.ndarray:
    scores = scores.astype(np.float64)
    scores[np.arange(len(self_index)), self_index] = -np.inf  # a document is not its own neighbour
    return np.argsort(-scores, axis=1, kind="stable")[:, :K]


def _matrix(column, dtype: str) -> np.ndarray:
    if dtype == "binary":
        return np.frombuffer(b"".join(column.to_pylist()), np.int8).reshape(len(column), -1)
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False)).reshape(len(column), -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "compact.json"))
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from bench import corpus
    from transforms.calibration import Calibration
    from transforms.quantize import bytes_per_vector, dequantize

    with tempfile.TemporaryDirectory(prefix="beam-embed-compact-") as work:
        path = corpus.write(os.path.join(work, "corpus.txt"), args.docs)
        stored = {}
        for dtype in DTYPES:
            _embed(path, os.path.join(work, dtype, "emb"), dtype)
            ids, column, size = _read(os.path.join(work, dtype, "emb"))
            order = np.argsort(ids)
            stored[dtype] = (_matrix(column, dtype)[order], size / len(ids))
        with open(os.path.join(work, "int8", "emb-calibration.json"), encoding="utf-8") as f:
            calibration = Calibration.from_json(f.read())
    n = len(order)
    queries = np.arange(min(args.queries, n))
    floats = stored["float32"][0].astype(np.float32)
    dim = floats.shape[1]
    truth = _top_k(floats[queries] @ floats.T, queries)
    int8 = dequantize(stored["int8"][0], "int8", calibration.ranges)
    bits = np.unpackbits(stored["binary"][0].view(np.uint8), axis=1)[:, :dim].astype(np.int32)
    # Hamming distance from bit agreements: matches = b.c + (1-b).(1-c).
    matches = bits[queries] @ bits.T + (1 - bits[queries]) @ (1 - bits).T
    found = {"int8": _top_k(int8[queries] @ int8.T, queries),
             "binary": _top_k(matches, queries)}
    result = {"docs": n, "queries": len(queries), "dim": dim, "k": K,
              "calibration": f"{calibration.method}: {calibration.documents} documents",
              "dtypes": {}}
    for dtype in DTYPES:
        recall = 1.0 if dtype == "float32" else float(np.mean(
            [len(set(t) & set(f)) / K for t, f in zip(truth, found[dtype])]))
        result["dtypes"][dtype] = {"vector_bytes_per_row": bytes_per_vector(dtype, dim),
                                   "parquet_bytes_per_row": round(stored[dtype][1], 1),
                                   f"recall@{K}": round(recall, 4)}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
