"""Fuzzed inputs: whatever a corpus holds, the pipeline does not crash and loses nothing.

For each Hypothesis example, tests/fuzz_corpus.py writes one large file per input
format (text, JSONL, CSV, Parquet) mixing clean records with every kind of fault,
and each goes through the real CLI (with a tiny random-weight model: the numbers do
not matter here, the bookkeeping does). For every run:

* ``read`` equals the number of records written: nothing dropped while reading;
* ``read == embedded + dead_lettered + duplicates`` (counters), and the output and
  dead-letter files hold exactly that many rows and letters;
* output ids are unique; every clean record's id is embedded, or dead-lettered with
  its id (an encoder failure); ids shared by disagreeing records are never embedded.

Few examples, each with thousands of records, keep it to a handful of pipeline runs.
The totals are printed at the end (``pytest -s``).
"""
from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_corpus import FuzzedCorpus, Material
from tests.pipeline_helpers import module_args, read_dead_letters, run_cli, shard_files
from transforms.records import REASONS

RECORDS_PER_FILE = 4000
EXAMPLES = 3
FORMATS = ("text", "jsonl", "csv", "parquet")

any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                     st.sampled_from(["\x00", "\u202e", "\u200b", "\ufeff", "\n", "\r", '"', ","]))
material = st.builds(
    Material,
    seed=st.integers(0, 2**32 - 1),
    atoms=st.lists(st.text(any_char, min_size=1, max_size=24), min_size=8, max_size=30).map(tuple),
    blobs=st.lists(st.binary(min_size=1, max_size=32), min_size=2, max_size=10).map(tuple),
    odd_ids=st.lists(st.one_of(
        st.integers(), st.floats(), st.booleans(), st.none(), st.text(any_char, max_size=20),
        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                             max_size=2)),
        min_size=3, max_size=12).map(tuple),
    csv_bom=st.booleans(),
    parquet_id_type=st.sampled_from(["string", "int64", "binary"]),
    parquet_text_type=st.sampled_from(["string", "large_string", "binary"]),
)

TOTALS = collections.Counter()


def read_output_ids(prefix) -> list[str]:
    import pyarrow.parquet as pq
    return [doc_id for path in shard_files(prefix, "parquet")
            for doc_id in pq.read_table(path, columns=["id"]).column("id").to_pylist()]


def check_run(summary, written, out):
    dead = sum(summary["dead_lettered"].values())
    output_ids = read_output_ids(out)
    letters = read_dead_letters(f"{out}-errors")
    lost = summary["read"] - (summary["embedded"] + dead + summary["duplicates"])
    missing = written.clean_ids - set(output_ids) - {letter["id"] for letter in letters}
    TOTALS.update(records=written.records, faults=written.faults, runs=1,
                  rows_lost=max(lost, 0) + len(missing) + abs(summary["read"] - written.records),
                  duplicates_in_output=len(output_ids) - len(set(output_ids)),
                  embedded=summary["embedded"], dead_lettered=dead, duplicates=summary["duplicates"])
    assert summary["read"] == written.records
    assert lost == 0
    assert len(output_ids) == summary["embedded"] == len(set(output_ids))
    assert len(letters) == dead
    assert all(letter["reason"] in REASONS for letter in letters)
    assert not missing, sorted(missing)[:5]
    assert not written.conflicting_ids & set(output_ids)


@pytest.fixture(scope="module")
def totals():
    yield TOTALS
    print(f"\nfuzzed inputs: {TOTALS['records']} records in {TOTALS['runs']} runs, "
          f"{TOTALS['faults']} faults injected, {TOTALS['rows_lost']} rows lost, "
          f"{TOTALS['duplicates_in_output']} duplicates in output "
          f"(embedded {TOTALS['embedded']}, dead-lettered {TOTALS['dead_lettered']}, "
          f"duplicates merged {TOTALS['duplicates']})")


def test_fuzzed_corpora_are_fully_accounted_for(tmp_path_factory, tiny_random_model, totals):
    model = module_args(tiny_random_model)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],  # a shrink would re-run the pipeline
              suppress_health_check=list(HealthCheck))   # hundreds of times
    @given(material)
    def fuzz(m):
        corpus = FuzzedCorpus(m, RECORDS_PER_FILE)
        for fmt in FORMATS:
            directory = tmp_path_factory.mktemp(f"fuzz-{fmt}")
            written = {"text": lambda: corpus.write_text(directory / "corpus.txt"),
                       "jsonl": lambda: corpus.write_jsonl(directory / "corpus.jsonl"),
                       "csv": lambda: corpus.write_csv(directory / "corpus.csv"),
                       "parquet": lambda: corpus.write_parquet(directory)}[fmt]()
            out = str(tmp_path_factory.mktemp(f"fuzz-{fmt}-out") / "emb")
            summary = run_cli(f"--input={directory}/*", f"--input_format={fmt}",
                              "--text_field=text", f"--output={out}", *model)
            check_run(summary, written, out)

    fuzz()
    assert totals["runs"] == EXAMPLES * len(FORMATS)
