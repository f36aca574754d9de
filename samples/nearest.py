"""Read the demo's Parquet output back and show each query's nearest neighbours.

    python samples/nearest.py out/demo/embeddings samples/corpus.txt
"""
import glob
import hashlib
import sys

import numpy as np
import pyarrow.parquet as pq


def main(prefix: str, corpus: str, queries: int = 3, k: int = 3) -> None:
    table = pq.read_table(sorted(glob.glob(f"{prefix}-*-of-*.parquet")))
    ids = table.column("id").to_pylist()
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with open(corpus, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    text = {hashlib.sha256(line.encode()).hexdigest(): line for line in lines}
    print(f"{len(ids)} rows, {len(set(lines))} distinct lines, dim {vectors.shape[1]}")
    for q in range(queries):
        scores = vectors @ vectors[q]
        print(f"\n{text[ids[q]][:90]}")
        for j in np.argsort(-scores)[1:k + 1]:
            print(f"   {scores[j]:.3f}  {text[ids[j]][:86]}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
