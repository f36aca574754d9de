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

Beside each text, JSONL and CSV file go two copies of its first sixteenth
(``write_copies``): compressed with a random codec and cut at a random offset (or
followed by junk, zero padding or a second member), and re-encoded in a random
encoding, with or without a byte-order mark. Every file is also parsed without
a pipeline, with RecordParser's ledger, to check the accounting byte by byte:
the stretches it consumed (records, blank lines, the header, the damaged part)
tile the decoded input with no gap and no overlap, every record stretch is one
record out, a damaged copy ends in one ``damaged_stream`` dead letter naming the
offset decoding stopped at, a re-encoded copy gives exactly the records of the
original, and one without a byte-order mark is refused whole.

Few examples, each with thousands of records, keep it to a handful of pipeline runs.
The totals are printed at the end (``pytest -s``).
"""
from __future__ import annotations

import collections
import re

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_corpus import Copy, FuzzedCorpus, Material, write_copies
from tests.pipeline_helpers import module_args, read_dead_letters, run_cli, shard_files
from transforms.read import RecordParser
from transforms.records import REASONS, DeadLetter

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


def parse_with_ledger(path, fmt):
    ledger = []
    with open(path, "rb") as f:
        records = list(RecordParser(fmt, "id", "text", None, None).parse(str(path), f,
                                                                         ledger=ledger))
    return records, ledger


def outcome(records):
    """What the records say, without where they came from (paths, offsets)."""
    return [(r.reason, r.id) if isinstance(r, DeadLetter) else ("row", r.id, r.text)
            for r in records]


def _head_records(copy: Copy, fmt, directory):
    """The records of the UTF-8 original of a re-encoded copy, for comparison."""
    if not copy.note.startswith("utf-"):
        return None
    head = directory.parent / f"{directory.name}-original{copy.path.suffix}"  # not an input
    head.write_bytes(copy.original)
    return parse_with_ledger(head, fmt)[0]


def account(path, fmt, copy: Copy | None = None, original=None) -> int:
    """Checks one file's accounting byte by byte (see the module docstring); returns
    its number of records."""
    records, ledger = parse_with_ledger(path, fmt)
    note = copy.note if copy else "original"
    if copy is not None and copy.refused:
        assert [r.reason for r in records if isinstance(r, DeadLetter)] == \
            ["unsupported_encoding"] and len(records) == 1, (note, records[:3])
        assert ledger == [(0, None, "rejected")]
        return 1
    starts, ends = [s for s, _, _ in ledger], [e for _, e, _ in ledger]
    assert ends[:-1] == starts[1:], note          # no gap, no overlap
    assert not ledger or starts[0] in (0, 3), note  # 3: a UTF-8 byte-order mark
    damaged = [r for r in records if isinstance(r, DeadLetter) and r.reason == "damaged_stream"]
    kinds = collections.Counter(what for _, _, what in ledger)
    assert kinds["record"] + len(damaged) == len(records), (note, kinds)
    if damaged:
        assert len(damaged) == 1 and records[-1] is damaged[0], note
        assert ledger[-1][1:] == (None, "lost"), note
        decoded = int(re.search(r"the (\d+) bytes decoded before it", damaged[0].detail)[1])
        # Everything an independent decoder recovers was read, and no more.
        assert ledger[-1][0] == decoded == len(copy.content), (note, decoded)
        TOTALS.update(damaged_files=1)
    elif copy is None or not copy.note.startswith("utf-"):
        assert (ends[-1] if ledger else 0) == len(copy.content if copy else path.read_bytes()), note
    if copy is not None and copy.note.startswith("utf-") and original is not None:
        # Decoded with the encoding its byte-order mark names: the same records.
        assert outcome(records) == outcome(original), note
        TOTALS.update(reencoded_files=1)
    return len(records)


@pytest.fixture(scope="module")
def totals():
    yield TOTALS
    print(f"\nfuzzed inputs: {TOTALS['records']} records in {TOTALS['runs']} runs, "
          f"{TOTALS['faults']} faults injected, {TOTALS['rows_lost']} rows lost, "
          f"{TOTALS['duplicates_in_output']} duplicates in output "
          f"(embedded {TOTALS['embedded']}, dead-lettered {TOTALS['dead_lettered']}, "
          f"duplicates merged {TOTALS['duplicates']}); {TOTALS['damaged_files']} damaged and "
          f"{TOTALS['reencoded_files']} re-encoded copies accounted for byte by byte")


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
            if fmt != "parquet":
                main = next(directory.iterdir())
                assert account(main, fmt) == written.records
                for copy in write_copies(m.seed, main, directory, main.suffix):
                    written.records += account(copy.path, fmt, copy,
                                               original=_head_records(copy, fmt, directory))
            out = str(tmp_path_factory.mktemp(f"fuzz-{fmt}-out") / "emb")
            summary = run_cli(f"--input={directory}/*", f"--input_format={fmt}",
                              "--text_field=text", f"--output={out}", *model)
            check_run(summary, written, out)

    fuzz()
    assert totals["runs"] == EXAMPLES * len(FORMATS)
