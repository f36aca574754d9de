"""A run killed half-way, then re-run, leaves exactly the output of one run.

The local pipeline process is SIGKILLed once Beam has written embedding rows into
its temporary directory, and before it renames anything; the same command then runs
again. The prefix also holds what an even earlier run wrote with another shard
count, and neighbours that merely share the start of the prefix. The killed run's
prefix locks stay behind, and the re-run takes them over; a run stopped with
SIGINT gives them back.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from tests.pipeline_helpers import (module_args, read_dead_letters, read_parquet_rows, run_cli,
                                    shard_files, text_id, write_lines_corpus)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Large enough that embedding goes on for seconds after the first rows reach the
# writer (Parquet batches of 2048 rows; batches are planned 4096 pieces at a time).
N_DOCUMENTS = 8000
KILL_DEADLINE_SECONDS = 240


def plant_earlier_run(out_dir, ids):
    """A complete earlier run with two shards, a summary and dead letters."""
    half = len(ids) // 2
    for shard, part in enumerate((ids[:half] + ["only-in-the-earlier-run"], ids[half:])):
        pq.write_table(pa.table({"id": part}), out_dir / f"emb-0000{shard}-of-00002.parquet")
    (out_dir / "emb-summary.json").write_text(json.dumps({"read": 1, "embedded": 1}))
    (out_dir / "emb-errors-00002-of-00003.jsonl").write_text('{"reason": "empty_text"}\n')


def plant_neighbours(out_dir) -> dict[str, bytes]:
    """Files next to the prefix that are not its shards, and must survive. (With names
    like emb-v2-00000-of-00001.parquet the run refuses to start: test_safety.py.)"""
    neighbours = {"embx-00000-of-00001.parquet": b"another run's output",
                  "emb.parquet": b"not a shard", "emb-00000-of-00001.txt": b"unrelated"}
    for name, content in neighbours.items():
        (out_dir / name).write_bytes(content)
    return neighbours


def wait_for_written_rows(process, out_dir):
    """Poll until Beam's temp dir holds a non-empty file; the run must still be going."""
    deadline = time.monotonic() + KILL_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed mid-way"
        if any(os.path.getsize(p) for p in glob.glob(str(out_dir / "beam-temp-emb-*" / "*"))):
            return
        time.sleep(0.05)
    raise AssertionError("no rows written within the deadline")


@contextlib.contextmanager
def run_in_progress(args, out_dir, log_path, stop_signal):
    """The CLI in a subprocess, yielded once rows are being written; ``stop_signal``
    is sent when the block ends (and SIGKILL if the run has not ended 120 s later)."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_written_rows(process, out_dir)
            yield process
        finally:
            process.send_signal(stop_signal)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def shard_sets(names, prefix, extension):
    """{shard count: [shard indexes]} of the shards named PREFIX-SSSSS-of-NNNNN.ext."""
    sets = {}
    for name in names:
        m = re.fullmatch(rf"{re.escape(prefix)}-(\d{{5}})-of-(\d{{5}})\.{extension}", name)
        if m:
            sets.setdefault(int(m.group(2)), []).append(int(m.group(1)))
    return sets


def test_sigkill_mid_run_then_rerun_leaves_one_clean_output(tmp_path, tiny_random_model):
    corpus = tmp_path / "corpus.txt"
    expected_ids = {text_id(line) for line in write_lines_corpus(corpus, N_DOCUMENTS)}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    plant_earlier_run(out_dir, sorted(expected_ids))
    neighbours = plant_neighbours(out_dir)
    args = [f"--input={corpus}", f"--output={out_dir / 'emb'}", *module_args(tiny_random_model),
            "--runner=FnApiRunner"]

    with run_in_progress(args, out_dir, tmp_path / "killed-run.log", signal.SIGKILL) as process:
        # Mid-run: the earlier run's files are already cleared, nothing final is written.
        assert not shard_files(str(out_dir / "emb"), "parquet")
        assert not shard_files(str(out_dir / "emb-errors"), "jsonl")
        assert not (out_dir / "emb-summary.json").exists()
        assert (out_dir / "emb.lock").exists() and (out_dir / "emb-errors.lock").exists()
    assert process.returncode == -signal.SIGKILL
    assert glob.glob(str(out_dir / "beam-temp-emb-*")), "the kill left no debris to clean up"
    # The killed run's locks stay behind; its process is gone, so the re-run takes them over.
    assert json.loads((out_dir / "emb.lock").read_text())["pid"] == process.pid

    summary = run_cli(*args)

    names = set(os.listdir(out_dir))
    embedding_shards = shard_sets(names, "emb", "parquet")
    dead_letter_shards = shard_sets(names, "emb-errors", "jsonl")
    assert len(embedding_shards) == 1 and len(dead_letter_shards) == 1, names
    [(count, indexes)] = embedding_shards.items()
    assert sorted(indexes) == list(range(count))
    shard_names = {f"emb-{i:05d}-of-{count:05d}.parquet" for i in indexes}
    [(dl_count, dl_indexes)] = dead_letter_shards.items()
    dl_names = {f"emb-errors-{i:05d}-of-{dl_count:05d}.jsonl" for i in dl_indexes}
    # Nothing partial or temporary, nothing of the earlier runs, the neighbours untouched,
    # no lock left.
    assert names == shard_names | dl_names | {"emb-summary.json"} | set(neighbours)
    for name, content in neighbours.items():
        assert (out_dir / name).read_bytes() == content

    rows = read_parquet_rows(str(out_dir / "emb"))  # fails on an id seen twice
    assert set(rows) == expected_ids
    assert read_dead_letters(str(out_dir / "emb-errors")) == []
    assert summary["read"] == summary["embedded"] == N_DOCUMENTS


def test_sigint_mid_run_releases_the_locks(tmp_path, tiny_random_model):
    """Ctrl-C: the run stops and gives its prefixes back (a SIGKILLed run cannot; the
    test above shows the next run taking such locks over)."""
    corpus = tmp_path / "corpus.txt"
    write_lines_corpus(corpus, N_DOCUMENTS)
    # Rows reach Beam's temp files only in the last stage, so on a loaded machine the
    # run can finish between the poll and the signal (exit 0, complete output): that
    # attempt says nothing about interrupts, and the test tries again.
    for attempt in range(3):
        out_dir = tmp_path / f"out{attempt}"
        args = [f"--input={corpus}", f"--output={out_dir / 'emb'}",
                *module_args(tiny_random_model), "--runner=FnApiRunner"]
        with run_in_progress(args, out_dir, tmp_path / "interrupted-run.log",
                             signal.SIGINT) as process:
            assert (out_dir / "emb.lock").exists()
        if not (process.returncode == 0 and (out_dir / "emb-summary.json").exists()):
            break
    assert process.returncode != 0
    assert not glob.glob(str(out_dir / "*.lock")), (tmp_path / "interrupted-run.log").read_text()[-2000:]
    assert not (out_dir / "emb-summary.json").exists()
