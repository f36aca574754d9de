"""--precision bfloat16 on the CPU: really computed in bfloat16, and close to float32.

The bfloat16 run goes in a subprocess: grappler's mixed-precision switch is
process-wide and would otherwise rewrite every later test's graphs.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from transforms.encode import NO_BFLOAT16_CPU, cpu_runs_bfloat16
from tests.pipeline_helpers import read_parquet_rows, run_cli, write_lines_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bfloat16_agrees_with_float32_per_document(tmp_path):
    corpus = tmp_path / "corpus.txt"
    write_lines_corpus(corpus, 60)
    run_cli(f"--input={corpus}", f"--output={tmp_path / 'f32' / 'emb'}")
    bf16_run = subprocess.run([sys.executable, "-m", "pipeline", f"--input={corpus}",
                               f"--output={tmp_path / 'bf16' / 'emb'}", "--precision=bfloat16",
                               "--runner=FnApiRunner"], check=True, cwd=ROOT, capture_output=True,
                              text=True)
    f32 = read_parquet_rows(str(tmp_path / "f32" / "emb"))
    bf16 = read_parquet_rows(str(tmp_path / "bf16" / "emb"))
    assert set(f32) == set(bf16) and len(f32) == 60
    a = np.stack([f32[i]["embedding"] for i in sorted(f32)])
    b = np.stack([bf16[i]["embedding"] for i in sorted(f32)])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99, cosine.min()
    if not cpu_runs_bfloat16():
        # TensorFlow skips the rewrite on such a CPU without a word: the run must say so.
        assert NO_BFLOAT16_CPU in bf16_run.stderr
        assert np.array_equal(a, b)
        return
    # bfloat16 has 8 significant bits: a float32-exact result would mean the rewrite never ran.
    assert np.abs(a - b).max() > 1e-4
