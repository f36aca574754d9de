"""``--skip_existing`` evidence that cannot be read is warned about by name and ignored:
its ids are embedded again, the run goes on, and the summary counts the ignored files."""
from __future__ import annotations

import logging
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata

from tests.pipeline_helpers import (module_args, read_parquet_rows, run_cli, shard_files,
                                    text_id, write_lines_corpus)
from transforms.skip_existing import FINGERPRINT_KEY, _ReadDoneIdsFn

N = 40
GOOD = 10  # ids of the first GOOD lines are in a readable file


def write(path, columns: dict, fingerprint, **kwargs):
    table = pa.table(columns).replace_schema_metadata({FINGERPRINT_KEY: fingerprint})
    pq.write_table(table, path, **kwargs)


def corrupt_data_pages(path, ids, fingerprint):
    """A valid footer over a snappy data page with garbage in it."""
    write(path, {"id": ids}, fingerprint, use_dictionary=False, compression="snappy")
    data = bytearray(open(path, "rb").read())
    start = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data[start + 200:start + 264] = b"\xff" * 64
    open(path, "wb").write(bytes(data))


def damaged_files(directory, ids, fingerprint) -> list[str]:
    """Files matching the glob that must each be ignored, one per kind of damage;
    together they claim every id of ``ids``."""
    os.makedirs(directory)
    d = str(directory)
    bad = []

    def add(name):
        bad.append(os.path.join(d, name))
        return bad[-1]

    corrupt_data_pages(add("emb-corrupt-page.parquet"), ids, fingerprint)
    write(add("emb-int-ids.parquet"), {"id": pa.array(range(len(ids)), pa.int64())}, fingerprint)
    write(add("emb-list-ids.parquet"), {"id": [[i] for i in ids]}, fingerprint)
    write(add("emb-null-ids.parquet"), {"id": ids + [None]}, fingerprint)
    write(add("emb-no-id.parquet"), {"key": ids}, fingerprint)
    pq.write_table(pa.Table.from_arrays([pa.array(ids), pa.array(ids)], names=["id", "id"])
                   .replace_schema_metadata({FINGERPRINT_KEY: fingerprint}),
                   add("emb-two-id-columns.parquet"))
    write(os.path.join(d, "whole.parquet"), {"id": ids}, fingerprint)
    whole = open(os.path.join(d, "whole.parquet"), "rb").read()
    os.remove(os.path.join(d, "whole.parquet"))
    open(add("emb-cut-short.parquet"), "wb").write(whole[:len(whole) // 2])
    open(add("emb-zero-bytes.parquet"), "wb").close()
    open(add("emb-not-parquet.parquet"), "w").write("id\n" + "\n".join(ids))
    os.mkfifo(add("emb-named-pipe.parquet"))  # opening it would block forever
    os.mkdir(os.path.join(d, "emb-a-directory.parquet"))  # Beam's listing skips it
    return bad


def test_unreadable_evidence_is_ignored_by_name_and_counted(tmp_path, tiny_random_model, caplog):
    caplog.set_level(logging.WARNING)
    lines = write_lines_corpus(tmp_path / "c.txt", N)
    ids = [text_id(line) for line in lines]
    model = module_args(tiny_random_model)
    first = f"{tmp_path}/first/emb"
    run_cli(f"--input={tmp_path / 'c.txt'}", f"--output={first}", *model)
    shard = shard_files(first, "parquet")[0]  # every shard carries the run's fingerprint
    fingerprint = pq.read_schema(shard).metadata[FINGERPRINT_KEY.encode()].decode()

    evidence = tmp_path / "evidence"
    bad = damaged_files(evidence, ids[GOOD:], fingerprint)
    write(evidence / "emb-good.parquet", {"id": ids[:GOOD]}, fingerprint)

    out = f"{tmp_path}/second/emb"
    summary = run_cli(f"--input={tmp_path / 'c.txt'}", f"--output={out}",
                      f"--skip_existing={evidence}/emb-*.parquet", *model)
    assert summary["skipped_existing"] == GOOD
    assert summary["embedded"] == N - GOOD
    assert summary["skip_existing_ignored_files"] == len(bad)
    assert set(read_parquet_rows(out)) == set(ids[GOOD:])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "--skip_existing" in r.getMessage()]
    for path in bad:
        assert [w for w in warnings if path in w and "ignored" in w], (path, warnings)
    assert any("Corrupt snappy compressed data" in w for w in warnings)
    assert any("type int64, not string" in w for w in warnings)


def test_a_file_deleted_between_match_and_read_is_ignored(tmp_path):
    path = tmp_path / "emb-00000-of-00001.parquet"
    write(path, {"id": ["a", "b"]}, "f")
    readable = fileio.ReadableFile(FileMetadata(str(path), os.path.getsize(path)),
                                   CompressionTypes.UNCOMPRESSED)
    read_ids = _ReadDoneIdsFn("f")
    read_ids.setup()
    assert list(read_ids.process(readable)) == ["a", "b"]
    os.remove(path)
    assert list(read_ids.process(readable)) == []


def test_ids_of_a_damaged_file_are_never_half_used(tmp_path):
    """A file whose first row groups read and a later one is corrupt skips nothing."""
    path = str(tmp_path / "emb.parquet")
    ids = [f"{i:064x}" for i in range(3000)]
    write(path, {"id": ids}, "f", use_dictionary=False, row_group_size=1000)
    data = bytearray(open(path, "rb").read())
    start = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    data[start + 200:start + 264] = b"\xff" * 64
    open(path, "wb").write(bytes(data))
    assert pq.ParquetFile(path).read_row_group(0).num_rows == 1000  # the start reads
    read_ids = _ReadDoneIdsFn("f")
    read_ids.setup()
    readable = fileio.ReadableFile(FileMetadata(path, len(data)), CompressionTypes.UNCOMPRESSED)
    assert list(read_ids.process(readable)) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_ignored(tmp_path):
    path = tmp_path / "emb.parquet"
    write(path, {"id": ["a"]}, "f")
    path.chmod(0)
    readable = fileio.ReadableFile(FileMetadata(str(path), 1), CompressionTypes.UNCOMPRESSED)
    read_ids = _ReadDoneIdsFn("f")
    read_ids.setup()
    assert list(read_ids.process(readable)) == []


def test_ids_that_are_not_utf8_make_the_file_no_evidence(tmp_path):
    """A string id column holding bytes that are not UTF-8 (a writer that does not
    validate) failed the job with UnicodeDecodeError when its ids were converted,
    after the first ids of the file had been used."""
    raw = pa.array([b"a", b"b", b"bad\xff"], type=pa.binary())
    path = tmp_path / "emb.parquet"
    write(path, {"id": pa.Array.from_buffers(pa.string(), 3, raw.buffers())}, "f")
    read_ids = _ReadDoneIdsFn("f")
    read_ids.setup()
    readable = fileio.ReadableFile(FileMetadata(str(path), os.path.getsize(path)),
                                   CompressionTypes.UNCOMPRESSED)
    assert list(read_ids.process(readable)) == []
