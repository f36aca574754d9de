"""The README's demo: the bundled corpus embeds to one row per distinct line."""
from __future__ import annotations

import os

from tests.pipeline_helpers import read_parquet_rows, run_cli

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "corpus.txt")


def test_demo_corpus_gives_one_row_per_distinct_line(tmp_path):
    with open(CORPUS, encoding="utf-8") as f:
        lines = {line.rstrip("\n") for line in f if line.strip()}
    assert len(lines) >= 300
    out = str(tmp_path / "demo" / "embeddings")
    summary = run_cli(f"--input={CORPUS}", f"--output={out}")
    rows = read_parquet_rows(out)
    assert len(rows) == len(lines) == summary["embedded"]
    assert summary["dead_lettered"] == {} and summary["padding_ratio"] > 0.8
