"""Re-runs and incremental runs with the outputs on Cloud Storage (gs://), against
gcp-storage-emulator running in this process.

Clearing an earlier run's files, the summary's write-and-rename and --skip_existing
all go through Beam's FileSystems, so they must behave on gs:// as on a local disk,
where a "directory" is only a name prefix. The prefix locks and write probes use the
storage client's generation preconditions (test_prefix_lock.py).
"""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.gcs_emulator import emulated_gcs
from tests.pipeline_helpers import module_args, text_id, write_lines_corpus

BUCKET = "beam-embed-test"


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    """gs://BUCKET on an in-process emulator, reached anonymously."""
    pytest.importorskip("gcp_storage_emulator.server")
    with emulated_gcs(monkeypatch, tmp_path, BUCKET):
        yield f"gs://{BUCKET}"


def put(path, data: bytes):
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.create(path) as f:
        f.write(data)


def names(pattern) -> list[str]:
    from apache_beam.io.filesystems import FileSystems
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read(path) -> bytes:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path) as f:
        return f.read()


def parquet_ids(pattern) -> list[str]:
    return [i for path in names(pattern)
            for i in pq.read_table(io.BytesIO(read(path))).column("id").to_pylist()]


def run(*args) -> dict:
    from pipeline.main import main
    argv = [*args, "--runner=FnApiRunner"]
    assert main(argv) == 0
    output = next(a.split("=", 1)[1] for a in argv if a.startswith("--output="))
    return json.loads(read(f"{output}-summary.json"))


def test_rerun_and_skip_existing_on_cloud_storage(gcs, tmp_path, tiny_random_model):
    lines = write_lines_corpus(tmp_path / "all.txt", 60)
    (tmp_path / "day1.txt").write_text("\n".join(lines[:50]) + "\n", encoding="utf-8")
    out, model = f"{gcs}/out", module_args(tiny_random_model)
    skip = f"--skip_existing={out}/*/emb-*.parquet"
    day1 = run(f"--input={tmp_path / 'day1.txt'}", f"--output={out}/d1/emb", skip, *model)
    assert day1["embedded"] == 50

    # What a killed or earlier run of day 2 left, and another fingerprint's output.
    table = pa.table({"id": [text_id(line) for line in lines]})
    put(f"{out}/d2/emb-00000-of-00009.parquet", b"stale shard")
    put(f"{out}/d2/emb-summary.json", b"{}")
    put(f"{out}/d2/beam-temp-emb-{'a' * 32}/part.emb.parquet", b"partial")
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({"beam_embed.fingerprint": "another"}), buffer)
    put(f"{out}/d0/emb-00000-of-00001.parquet", buffer.getvalue())

    day2 = run(f"--input={tmp_path / 'all.txt'}", f"--output={out}/d2/emb", skip, *model)
    assert day2["embedded"] == 10 and day2["skipped_existing"] == 50
    assert not [n for n in names(f"{out}/d2/**") if "beam-temp" in n or "-of-00009" in n]
    assert sorted(parquet_ids(f"{out}/d[12]/emb-*-of-*.parquet")) == sorted(map(text_id, lines))
    # Neither the locks nor the write probes are left behind...
    assert not [n for n in names(f"{out}/**") if n.endswith(".lock") or "write-probe" in n]
    # ...and while another run holds the prefix, a run is refused before anything runs.
    from pipeline.main import main
    from pipeline.prefix_lock import PrefixLock
    with PrefixLock([f"{out}/d2/emb"]):
        assert main([f"--input={tmp_path / 'all.txt'}", f"--output={out}/d2/emb", *model,
                     "--runner=FnApiRunner"]) == 2
    assert sorted(parquet_ids(f"{out}/d2/emb-*-of-*.parquet")) == sorted(map(text_id, lines[50:]))
