"""A local run's memory settings (pipeline/local_memory.py): malloc arenas, data messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from apache_beam.runners.worker import data_plane

from pipeline import local_memory
from tests.pipeline_helpers import module_args, read_parquet_rows, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _in_a_new_process(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin", **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


ARENAS = """
import json
from pipeline import local_memory
print(json.dumps({"capped": local_memory.cap_malloc_arenas()}))
"""


def test_arenas_are_capped_on_glibc_unless_the_environment_chose():
    assert _in_a_new_process(ARENAS, {}) == {"capped": True}
    assert _in_a_new_process(ARENAS, {"MALLOC_ARENA_MAX": "4"}) == {"capped": False}


def test_a_local_run_sends_smaller_messages_and_an_element_above_their_size_whole(
        tmp_path, tiny_random_model):
    """Two workers talk to the runner over gRPC; after a run the channel coalesces
    at most 1 MB per message, and a row three times that size (its text kept)
    arrives whole, beside small ones."""
    big = " ".join(f"word{i % 997}" for i in range(400_000))  # ~3.6 MB of text
    assert len(big) > 3 * local_memory.DATA_MESSAGE_BYTES
    texts = [big] + [f"a small document number {i}" for i in range(50)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    summary = run_cli(*module_args(tiny_random_model), f"--input={corpus}",
                      f"--output={tmp_path}/emb", "--keep_text")
    assert data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD == local_memory.DATA_MESSAGE_BYTES
    assert summary["embedded"] == len(texts)
    kept = sorted(row["text"] for row in read_parquet_rows(f"{tmp_path}/emb").values())
    assert kept == sorted(texts)


def test_the_threshold_is_only_ever_lowered(monkeypatch):
    monkeypatch.setattr(data_plane, "_DEFAULT_SIZE_FLUSH_THRESHOLD", 64 << 10)
    assert local_memory.smaller_data_messages()
    assert data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD == 64 << 10
