"""Output prefixes mean exactly the files they name (issue 13, findings 1 and 7).

- A prefix with a glob character made Beam's finalize step delete other outputs
  (``--output='o/em?'`` deleted ``o/emb-00000-of-00001.parquet``): such prefixes are
  refused, in --output and --dead_letter, anywhere in the path.
- A prefix that cannot be written (a regular file in the path, /proc, a read-only
  mount) failed with a traceback after the model loaded: it fails first, exit 2.
- Clearing an earlier run's files goes by literal names, whatever the working
  directory is called, through symbolic links, and between prefixes that are
  equal or extend one another.
"""
from __future__ import annotations

import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.outputs import DEAD_LETTER_EXTENSIONS, clear_previous_run, files_beam_would_delete
from tests.pipeline_helpers import (fails_with, module_args, read_dead_letters, read_parquet_rows,
                                    run_cli, text_id)

# Options that would fail right after the output checks: a run that gets past them
# names --preprocessor, so an error naming the output proves the check came first.
NO_MODEL = ["--preprocessor=/nonexistent/preprocessor", "--encoder=/nonexistent/encoder"]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A scratch directory as the working directory, with a one-line input."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("hello\nworld\n", encoding="utf-8")
    return tmp_path


def plant(path, data=b"another run's output"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def every_file(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


@pytest.mark.parametrize("option,prefix,victim", [
    ("--output", "o/em?", "o/emb-00000-of-00001.parquet"),        # the example
    ("--output", "o/emb[1]", "o/emb1-00000-of-00001.parquet"),
    ("--output", "o/run[1]/emb", "o/run1/emb-00000-of-00001.parquet"),  # in a directory part
    ("--output", "o/*/emb", "o/x/emb-00000-of-00001.parquet"),
    ("--output", "o/e*", "o/emb-00000-of-00001.parquet"),
    ("--output", "o/**", "o/x/emb-00000-of-00001.parquet"),
    ("--output", "o/[!x]mb", "o/emb-00000-of-00001.parquet"),
    ("--output", "o/a\\b/emb", "o/a/emb-00000-of-00001.parquet"),
    ("--dead_letter", "o/emb-error?", "o/emb-errors-00000-of-00001.jsonl"),
    ("--dead_letter", "o/[e]/errors", "o/e/errors-00000-of-00001.jsonl"),
])
def test_a_glob_character_in_a_prefix_is_refused_and_deletes_nothing(
        capsys, scratch, tiny_random_model, option, prefix, victim):
    plant(scratch / victim)
    plant(scratch / "o/emb-summary.json", b'{"embedded": 2}')
    before = every_file(scratch)
    args = ["--input=in.txt", "--output=o/other/emb", *module_args(tiny_random_model)]
    args = [a for a in args if not a.startswith(f"{option}=")] + [f"{option}={prefix}"]
    fails_with(capsys, args, option, "glob")
    assert every_file(scratch) == before  # nothing deleted, no beam-temp-* left


@pytest.mark.parametrize("prefix,fragment", [
    ("o/2o/", "ends in '/'"),   # would write o/2o/-00000-of-00001.parquet
    ("o/.", "ends in '.'"),
    ("o/..", "ends in '..'"),
    ("o/beam-temp-emb-0123456789abcdef0123456789abcdef/emb", "temporary"),
    ("o/beam-temp-x/emb", "temporary"),
])
def test_a_prefix_without_a_name_or_inside_a_beam_temp_dir_is_refused(capsys, scratch, prefix,
                                                                       fragment):
    for option in ("--output", "--dead_letter"):
        args = ["--input=in.txt", "--output=o/emb", *NO_MODEL]
        args = [a for a in args if not a.startswith(f"{option}=")] + [f"{option}={prefix}"]
        fails_with(capsys, args, option, fragment)
    assert every_file(scratch) == ["in.txt"]


def test_a_bucket_without_an_object_prefix_is_refused(capsys, scratch, monkeypatch):
    pytest.importorskip("gcp_storage_emulator.server")
    from tests.gcs_emulator import emulated_gcs
    with emulated_gcs(monkeypatch, scratch, "bucket"):
        for prefix in ("gs://bucket", "gs://bucket/"):
            fails_with(capsys, ["--input=in.txt", f"--output={prefix}", *NO_MODEL],
                       "--output", "no object prefix")


def test_braces_are_literal_end_to_end(scratch, tiny_random_model):
    """Beam's globs do not expand {a,b}: such a prefix is one literal directory."""
    neighbour = plant(scratch / "o/a/emb-00000-of-00001.parquet")
    # One worker, so one shard to list (two workers write a shard per bundle).
    summary = run_cli("--input=in.txt", "--output=o/{a,b}/emb", *module_args(tiny_random_model),
                      "--direct_num_workers=1")
    assert summary["embedded"] == 2
    assert set(read_parquet_rows("o/{a,b}/emb")) == {text_id("hello"), text_id("world")}
    assert neighbour.read_bytes() == b"another run's output"
    assert sorted(os.listdir("o/{a,b}")) == ["emb-00000-of-00001.parquet",
                                              "emb-errors-00000-of-00001.jsonl",
                                              "emb-summary.json"]


def test_dead_letters_may_share_the_output_prefix(scratch, tiny_random_model):
    """--dead_letter equal to --output: the .jsonl and .parquet shards live side by
    side; a re-run replaces both and touches no neighbour."""
    (scratch / "in.jsonl").write_text('{"id": "1", "text": "hello"}\n{"id": "2", "text": ""}\n'
                                      '{"id": "3", "text": "a"}\n{"id": "3", "text": "b"}\n',
                                      encoding="utf-8")
    neighbour = plant(scratch / "o/emb-v2-00000-of-00001.jsonl.txt")
    args = ["--input=in.jsonl", "--text_field=text", "--output=o/emb", "--dead_letter=o/emb",
            *module_args(tiny_random_model)]
    for _ in range(2):
        summary = run_cli(*args)
        assert summary["embedded"] == 1
        assert set(read_parquet_rows("o/emb")) == {"1"}
        assert sorted(d["reason"] for d in read_dead_letters("o/emb")) == [
            "duplicate_id", "duplicate_id", "empty_text"]
    assert neighbour.exists()
    assert not [n for n in os.listdir("o") if n.endswith(".lock") or n.startswith("beam-temp")]


@pytest.mark.parametrize("option,prefix,fragment", [
    ("--output", "in.txt/emb", "in.txt is not a directory"),       # the example
    ("--output", "in.txt/deeper/emb", "in.txt is not a directory"),
    ("--dead_letter", "in.txt/errors", "in.txt is not a directory"),
    ("--output", "/proc/beam-embed-test/emb", "cannot write in /proc"),
    ("--dead_letter", "/proc/errors", "cannot write in /proc"),
    ("--output", "broken/emb", "broken symbolic link"),
])
def test_an_unwritable_output_fails_before_the_model_loads(capsys, scratch, option, prefix,
                                                           fragment):
    os.symlink(scratch / "nowhere", scratch / "broken")
    args = ["--input=in.txt", "--output=o/emb", *NO_MODEL]
    args = [a for a in args if not a.startswith(f"{option}=")] + [f"{option}={prefix}"]
    err = fails_with(capsys, args, option, fragment)
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(scratch)) == ["broken", "in.txt"]


@pytest.mark.parametrize("option,prefix", [
    ("--output", "o/" + "n" * 250),                 # the shards fit, Beam's temp names do not
    ("--output", "o/" + "n" * 210),                 # its lock and shards fit too
    ("--dead_letter", "o/" + "e" * 215),
    ("--output", "o/" + "d" * 256 + "/emb"),        # a directory the run would create
])
def test_a_prefix_whose_names_are_too_long_fails_before_the_model_loads(capsys, scratch, option,
                                                                        prefix):
    """A 250-byte name passed every check, then failed with ENAMETOOLONG and a traceback
    (exit 1) when the lock was created, after the model had loaded."""
    args = ["--input=in.txt", "--output=o/emb", *NO_MODEL]
    args = [a for a in args if not a.startswith(f"{option}=")] + [f"{option}={prefix}"]
    err = fails_with(capsys, args, option, "the file system takes at most 255")
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(scratch)) == ["in.txt"]


def test_the_longest_prefix_that_fits_is_accepted(capsys, scratch):
    # 255 bytes: "beam-temp-" + name + "-" + 32 hex digits, and the temp file
    # "<uuid4>.NAME.tfrecord" (46 more), are the longest names a run makes.
    fails_with(capsys, ["--input=in.txt", "--output=o/" + "n" * (255 - 46),
                        "--dead_letter=o/errors", *NO_MODEL], "--preprocessor")


@pytest.fixture
def read_only_dir(tmp_path):
    path = tmp_path / "ro"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("option", ["--output", "--dead_letter"])
def test_an_output_on_a_read_only_mount_fails_before_the_model_loads(capsys, scratch,
                                                                     read_only_dir, option):
    args = ["--input=in.txt", "--output=o/emb", *NO_MODEL]
    args = ([a for a in args if not a.startswith(f"{option}=")]
            + [f"{option}={read_only_dir}/sub/emb"])
    fails_with(capsys, args, option, f"cannot write in {read_only_dir}", "Read-only file system")


def test_the_write_probe_leaves_nothing_behind(capsys, scratch):
    (scratch / "o").mkdir()
    fails_with(capsys, ["--input=in.txt", "--output=o/emb", "--dead_letter=new/dir/errors",
                        *NO_MODEL], "--preprocessor")
    assert every_file(scratch) == ["in.txt"]
    assert not (scratch / "new").exists()  # the run would create it; the check does not


def shard(path, ids=("x",)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(ids)}), path)
    return path


def test_clearing_is_literal_whatever_the_working_directory_is_called(tmp_path, monkeypatch):
    """A working directory named run[1]: relative prefixes must not become patterns
    (the old code globbed the absolute path, and so cleared run1/'s shards)."""
    (tmp_path / "run[1]").mkdir()
    other = shard(tmp_path / "run1/o/emb-00000-of-00002.parquet")
    mine = shard(tmp_path / "run[1]/o/emb-00000-of-00002.parquet")
    monkeypatch.chdir(tmp_path / "run[1]")
    assert clear_previous_run("o/emb", "o/emb-errors") == ["o/emb-00000-of-00002.parquet"]
    assert other.exists() and not mine.exists()
    assert files_beam_would_delete("o/emb", ("parquet",)) == []
    shard(tmp_path / "run1/o/emb-v2-00000-of-00001.parquet")
    assert files_beam_would_delete("o/emb", ("parquet",)) == []


def test_clearing_a_prefix_whose_directory_does_not_exist(tmp_path):
    assert clear_previous_run(str(tmp_path / "no/such/emb"), str(tmp_path / "no/such/err")) == []
    assert not (tmp_path / "no").exists()


def test_clearing_through_a_symbolic_link_and_never_into_a_linked_directory(tmp_path):
    real, precious = tmp_path / "real", tmp_path / "precious"
    old = shard(real / "emb-00000-of-00003.parquet")
    temp = real / f"beam-temp-emb-{'a' * 32}"
    plant(temp / "part.emb.parquet", b"partial")
    plant(precious / "keep.txt", b"not beam's")
    os.symlink(precious, real / f"beam-temp-emb-{'b' * 32}")  # named like a temp dir
    os.symlink(real, tmp_path / "link")
    deleted = clear_previous_run(str(tmp_path / "link/emb"), str(tmp_path / "link/emb-errors"))
    assert sorted(os.path.basename(p) for p in deleted) == sorted([old.name, temp.name])
    assert not old.exists() and not temp.exists()
    assert (precious / "keep.txt").read_bytes() == b"not beam's"


@pytest.mark.parametrize("output,dead_letter", [
    ("o/emb", "o/emb"),
    ("o/emb", "o/emb-00000-of-00001"),
    ("o/emb-00000-of-00001", "o/emb"),
])
def test_clearing_prefixes_that_are_equal_or_extend_each_other(tmp_path, output, dead_letter):
    """Each prefix clears only its own kind of shard: .parquet/.tfrecord for the
    output, .jsonl for the dead letters, so neither clears the other's."""
    out, dl = str(tmp_path / output), str(tmp_path / dead_letter)
    stale = {f"{output}-00000-of-00002.parquet", f"{output}-summary.json",
             f"{dead_letter}-00001-of-00002.jsonl"}
    others = {f"{output}-00000-of-00002.jsonl.bak", f"{dead_letter}-00000-of-00001.parquet.bak",
              f"{output}-v2-00000-of-00001.tfrecord.gz"}
    for name in stale | others:
        plant(tmp_path / name)
    deleted = {os.path.relpath(p, tmp_path) for p in clear_previous_run(out, dl)}
    assert deleted == stale
    assert set(every_file(tmp_path)) == others
    assert files_beam_would_delete(dl, DEAD_LETTER_EXTENSIONS) == []


def test_clearing_never_touches_a_lock(tmp_path):
    """The run clears its prefixes while holding their locks; a prefix named like a
    lock (o/emb.lock) is another prefix, whose clearing leaves o/emb.lock alone."""
    from pipeline.prefix_lock import PrefixLock
    out = str(tmp_path / "emb")
    with PrefixLock([out, f"{out}-errors"]):
        assert clear_previous_run(out, f"{out}-errors") == []
        assert clear_previous_run(f"{out}.lock", f"{out}.lock-errors") == []
        assert sorted(os.listdir(tmp_path)) == ["emb-errors.lock", "emb.lock"]


def test_directories_named_like_shards_are_not_cleared(tmp_path):
    """Beam's glob lists files only; a directory called emb-00000-of-00002.parquet is
    someone's directory, not a shard, and neither is what is inside it."""
    inside = plant(tmp_path / "emb-00000-of-00002.parquet/emb-00000-of-00001.parquet")
    assert clear_previous_run(str(tmp_path / "emb"), str(tmp_path / "emb-errors")) == []
    assert files_beam_would_delete(str(tmp_path / "emb"), ("parquet",)) == []
    assert inside.exists()
