"""A run that fails once it is under way (the disk fills up, a sink refuses rows)
ends in one line naming the cause, exit 1, and no summary; re-running clears what
it left. A full disk is a real one: a tmpfs mounted small (root only; skipped
where mounting is not allowed)."""
from __future__ import annotations

import os
import subprocess
from pathlib import PosixPath

import pytest

from pipeline.main import failure_cause, main
from tests.pipeline_helpers import module_args, read_parquet_rows, write_lines_corpus

DOCS = 3000  # ~390 KB of Parquet from the tiny model's 32-wide vectors


class SmallDisk(PosixPath):
    def grow(self):
        subprocess.run(["mount", "-o", "remount,size=64m", str(self)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB file system (a SmallDisk path); ``grow()`` makes it 64 MiB."""
    mount = SmallDisk(tmp_path / "disk")
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _argv(tiny_random_model, corpus, output, *extra):
    return [f"--input={corpus}", f"--output={output}", "--runner=FnApiRunner",
            *module_args(tiny_random_model), *extra]


def test_a_full_disk_fails_in_one_line_and_a_rerun_after_it_completes(tiny_random_model, small_disk,
                                                                       tmp_path, capsys):
    corpus = tmp_path / "in.txt"
    lines = write_lines_corpus(corpus, DOCS)
    output = small_disk / "emb"
    assert main(_argv(tiny_random_model, corpus, output)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("beam-embed: error: the run failed: "), err[-3000:]
    assert "No space left on device" in last and "-v shows the traceback" in last, last
    assert f"there is no {output}-summary.json, so the prefix holds no complete output" in last, last
    assert not os.path.exists(f"{output}-summary.json")

    small_disk.grow()
    assert main(_argv(tiny_random_model, corpus, output)) == 0
    rows = read_parquet_rows(str(output))
    assert len(rows) == len(set(lines)) == DOCS
    assert os.path.exists(f"{output}-summary.json")
    # What the failed run left (Beam's temporary directories, partial shards) is gone.
    assert not [name for name in os.listdir(small_disk) if name.startswith("beam-temp-")]


def test_verbose_shows_the_traceback_of_a_failed_run(tiny_random_model, small_disk, tmp_path, capsys):
    corpus = tmp_path / "in.txt"
    write_lines_corpus(corpus, DOCS)
    assert main(["-v", *_argv(tiny_random_model, corpus, small_disk / "emb")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "No space left on device" in err
    assert "-v shows the traceback" not in err


@pytest.mark.parametrize("error,cause", [
    # Beam's wrapper: the worker's traceback text, the original exception last.
    (RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
                  "OSError: [Errno 28] No space left on device [while running 'Write']\n"),
     "OSError: [Errno 28] No space left on device [while running 'Write']"),
    (ValueError("bad row\n"), "ValueError: bad row"),
    (RuntimeError("it broke"), "RuntimeError: it broke"),
    (OSError(), "OSError"),
])
def test_the_cause_is_the_last_line_of_what_failed(error, cause):
    assert failure_cause(error) == cause


def test_a_long_cause_is_cut():
    assert len(failure_cause(ValueError("x" * 5000))) == 600
