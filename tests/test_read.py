"""ReadCorpus (and the records it produces) on good and bad corpora, on FnApiRunner."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures import bad_corpus
from transforms import counters
from transforms.dedupe import DeduplicateDocuments
from transforms.read import ReadCorpus, ReadResult, infer_input_format
from transforms.records import REASONS, DeadLetter, Document, raw_prefix


def new_pipeline():
    return beam.Pipeline(runner="FnApiRunner")


def materialize(pcoll, path: str, label: str):
    """Writes a PCollection of dataclasses as JSON lines, to load after the run."""
    return (pcoll
            | f"{label}ToJson" >> beam.Map(
                lambda record: json.dumps(dataclasses.asdict(record)))
            | f"{label}Write" >> beam.io.WriteToText(path, shard_name_template=""))


def load(path: str, cls) -> list:
    with open(path, encoding="utf-8") as f:
        return [cls(**json.loads(line)) for line in f]


def read_corpus(tmp_path, file_pattern, **options):
    """Runs ReadCorpus alone: (documents, dead letters, counters)."""
    out = str(tmp_path / "out")
    os.makedirs(out, exist_ok=True)
    with new_pipeline() as pipeline:
        documents, dead_letters = pipeline | ReadCorpus(file_pattern, **options)
        materialize(documents, f"{out}/documents", "Documents")
        materialize(dead_letters, f"{out}/dead_letters", "DeadLetters")
    result = pipeline.result  # set by the with block's run()
    return (load(f"{out}/documents", Document), load(f"{out}/dead_letters", DeadLetter),
            counters.committed_counters(result))


def reasons(dead_letters) -> dict:
    counts = {}
    for dead_letter in dead_letters:
        counts[dead_letter.reason] = counts.get(dead_letter.reason, 0) + 1
    return counts


def by_source(records) -> dict:
    return {record.source: record for record in records}


# The whole bad corpus, read, deduplicated and reconciled -------------------------

def test_bad_corpus_every_record_is_accounted_for(tmp_path):
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    files = bad_corpus.write_all(str(corpus_dir))
    out = str(tmp_path)
    with new_pipeline() as pipeline:
        documents, dead_letters = [], []
        for corpus_file in files:
            read = pipeline | f"Read{corpus_file.input_format}" >> ReadCorpus(
                corpus_file.path)
            documents.append(read.documents)
            dead_letters.append(read.dead_letters)
        unique = (documents | "FlattenDocuments" >> beam.Flatten()
                  | DeduplicateDocuments())
        dead_letters.append(unique.dead_letters)
        materialize(unique.documents, f"{out}/documents", "Documents")
        materialize(dead_letters | "FlattenDeadLetters" >> beam.Flatten(),
                    f"{out}/dead_letters", "DeadLetters")
    result = pipeline.result
    documents = load(f"{out}/documents", Document)
    dead_letters = load(f"{out}/dead_letters", DeadLetter)
    counts = counters.committed_counters(result)

    expected = {}
    for corpus_file in files:
        for reason, count in corpus_file.dead_letters.items():
            expected[reason] = expected.get(reason, 0) + count
    expected["duplicate_id"] = bad_corpus.DUPLICATE_ID_DEAD_LETTERS
    assert reasons(dead_letters) == expected
    # Spelled out, so a change to the fixture cannot silently move both sides.
    assert expected == {"invalid_utf8": 4, "empty_text": 5, "malformed_record": 4,
                        "missing_field": 2, "invalid_type": 6, "duplicate_id": 3}

    assert counts[counters.READ] == sum(f.read for f in files) == 40
    assert counts[counters.DUPLICATES] == bad_corpus.DUPLICATES
    for reason in REASONS:
        assert counts.get(counters.DEAD_LETTERED[reason], 0) == expected.get(reason, 0)
    assert len(documents) == 14
    assert (counts[counters.READ]
            == len(documents) + len(dead_letters) + counts[counters.DUPLICATES])

    assert len({d.id for d in documents}) == len(documents)
    assert "dup-conflict" not in {d.id for d in documents}
    assert {d.source.split(":")[-1] for d in dead_letters
            if d.reason == "duplicate_id"} == {"16", "17", "11"}
    paths = {f.path for f in files}
    for dead_letter in dead_letters:
        assert dead_letter.reason in REASONS and dead_letter.detail
        path, _, position = dead_letter.source.rpartition(":")
        assert path in paths and position, dead_letter


# Plain text -----------------------------------------------------------------------

def test_text_lines(tmp_path):
    corpus_file = bad_corpus.write_text(str(tmp_path))
    documents, dead_letters, counts = read_corpus(tmp_path, corpus_file.path)
    path = corpus_file.path
    assert counts[counters.READ] == 9
    assert len(documents) == corpus_file.documents
    assert reasons(dead_letters) == corpus_file.dead_letters

    dead = by_source(dead_letters)
    assert dead[f"{path}:2"].reason == "invalid_utf8"
    assert "byte offset 4 of the line" in dead[f"{path}:2"].detail
    assert dead[f"{path}:2"].raw == "bad \\xff\\xfe bytes"
    assert dead[f"{path}:3"].reason == dead[f"{path}:4"].reason == "empty_text"
    assert all(d.id is None for d in dead_letters)

    docs = by_source(documents)
    assert docs[f"{path}:1"].id == hashlib.sha256(
        b"The first good sentence.").hexdigest()
    assert docs[f"{path}:1"].id == docs[f"{path}:7"].id
    assert docs[f"{path}:5"].text == bad_corpus.TWO_MB_LINE
    assert docs[f"{path}:6"].text == "NUL\x00 and bell \x07 are kept"
    assert docs[f"{path}:8"].text == "windows line"
    assert docs[f"{path}:8"].id == hashlib.sha256(b"windows line").hexdigest()
    assert docs[f"{path}:9"].text == "last line without newline"
    assert all(d.text_pair is None for d in documents)


def test_gzipped_text_and_globs(tmp_path):
    bad_corpus.write_text(str(tmp_path), "a.txt.gz")
    bad_corpus.write_text(str(tmp_path), "b.txt")
    documents, dead_letters, counts = read_corpus(tmp_path, str(tmp_path / "*.txt*"),
                                                  input_format="text")
    assert counts[counters.READ] == 18
    assert len(documents) == 12 and len(dead_letters) == 6
    assert {d.source.rsplit(":", 1)[0] for d in documents} == {
        str(tmp_path / "a.txt.gz"), str(tmp_path / "b.txt")}


def test_bare_relative_glob(tmp_path, monkeypatch):
    """"*.txt" in the working directory: Beam's local glob alone matches nothing there."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "corpus")
    documents, _, counts = read_corpus(tmp_path, "*.txt")
    assert counts[counters.READ] == 2
    assert {d.source for d in documents} == {f"{tmp_path}/corpus/a.txt:1", f"{tmp_path}/corpus/a.txt:2"}


def test_byte_order_mark_is_not_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\n")
    documents, _, _ = read_corpus(tmp_path, str(path))
    assert [d.text for d in documents] == ["hello"]
    assert documents[0].id == hashlib.sha256(b"hello").hexdigest()


def test_file_names_that_are_not_utf8(tmp_path):
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"ok\n\n")
    documents, dead_letters, _ = read_corpus(tmp_path, str(tmp_path / "caf*.txt"))
    assert [d.source for d in documents] == [f"{tmp_path}/caf\\xe9.txt:1"]
    assert [d.source for d in dead_letters] == [f"{tmp_path}/caf\\xe9.txt:2"]


# JSONL, CSV, Parquet ----------------------------------------------------------------

def test_jsonl_records(tmp_path):
    corpus_file = bad_corpus.write_jsonl(str(tmp_path))
    documents, dead_letters, counts = read_corpus(tmp_path, corpus_file.path)
    path = corpus_file.path
    assert counts[counters.READ] == 19
    assert reasons(dead_letters) == corpus_file.dead_letters
    assert len(documents) == corpus_file.documents

    docs = by_source(documents)
    assert docs[f"{path}:2"].id == "2"
    assert docs[f"{path}:19"].text == "NUL \x00 kept"
    dead = by_source(dead_letters)
    expectations = {
        3: ("invalid_type", "'text' is an integer"),
        4: ("invalid_type", "'text' is null"),
        5: ("invalid_type", "'text' is an array"),
        6: ("missing_field", "'text' is missing"),
        7: ("missing_field", "'id' is missing"),
        8: ("invalid_type", "'id' is a number"),
        9: ("malformed_record", "invalid JSON"),
        10: ("malformed_record", "not an object"),
        11: ("empty_text", "whitespace"),
        12: ("invalid_utf8", "lone surrogate U+D800"),
        13: ("invalid_utf8", "byte 0xff"),
        20: ("invalid_type", "'id' is a boolean"),
    }
    for line, (reason, detail) in expectations.items():
        dead_letter = dead[f"{path}:{line}"]
        assert dead_letter.reason == reason, dead_letter
        assert detail in dead_letter.detail, dead_letter
    assert dead[f"{path}:3"].id == "j3"  # known once the id was read
    assert dead[f"{path}:7"].id is None
    assert json.loads(dead[f"{path}:3"].raw) == {"id": "j3", "text": 5}


def test_csv_rows(tmp_path):
    corpus_file = bad_corpus.write_csv(str(tmp_path))
    documents, dead_letters, counts = read_corpus(tmp_path, corpus_file.path)
    path = corpus_file.path
    assert counts[counters.READ] == 8
    assert reasons(dead_letters) == corpus_file.dead_letters
    docs = by_source(documents)
    assert docs[f"{path}:4"].text == "a field over\ntwo lines"
    assert docs[f"{path}:9"].text == "quoted, with a comma"
    assert docs[f"{path}:11"].id == "dup-conflict"
    dead = by_source(dead_letters)
    assert dead[f"{path}:3"].reason == "malformed_record"
    assert "1 fields, the header has 2" in dead[f"{path}:3"].detail
    assert dead[f"{path}:6"].reason == "malformed_record"
    assert dead[f"{path}:7"].reason == "empty_text"
    assert dead[f"{path}:8"].reason == "invalid_utf8"
    assert "byte offset 3 of the line" in dead[f"{path}:8"].detail


def test_csv_field_names_and_text_pair(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("doc,query,passage\nq1,what is it,it is a thing\nq2,,x\n"
                    "q3,no passage\n")
    documents, dead_letters, _ = read_corpus(
        tmp_path, str(path), id_field="doc", text_field="query",
        text_pair_field="passage")
    assert [(d.id, d.text, d.text_pair) for d in documents] == [
        ("q1", "what is it", "it is a thing")]
    assert sorted((d.reason, d.source) for d in dead_letters) == [
        ("empty_text", f"{path}:3"), ("malformed_record", f"{path}:4")]


def test_parquet_rows(tmp_path):
    corpus_file = bad_corpus.write_parquet(str(tmp_path))
    documents, dead_letters, counts = read_corpus(tmp_path, corpus_file.path)
    path = corpus_file.path
    assert counts[counters.READ] == 4
    assert sorted((d.source, d.id) for d in documents) == [
        (f"{path}:row 0", "p0"), (f"{path}:row 3", "p3")]
    dead = by_source(dead_letters)
    assert dead[f"{path}:row 1"].reason == "invalid_type"
    assert dead[f"{path}:row 1"].id == "p1"
    assert dead[f"{path}:row 2"].reason == "empty_text"


def test_parquet_without_the_text_column(tmp_path):
    path = tmp_path / "ids_only.parquet"
    pq.write_table(pa.table({"id": [1, 2], "body": ["a", "b"]}), path)
    documents, dead_letters, _ = read_corpus(tmp_path, str(path))
    assert documents == []
    assert [(d.reason, d.id) for d in sorted(dead_letters, key=lambda d: d.source)] \
        == [("missing_field", "1"), ("missing_field", "2")]
    assert "'text' is missing" in dead_letters[0].detail


def test_corrupt_files_become_dead_letters(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all\n" * 10)
    documents, dead_letters, counts = read_corpus(tmp_path,
                                                  str(tmp_path / "broken.parquet"))
    assert documents == [] and counts[counters.READ] == 1
    assert [d.reason for d in dead_letters] == ["malformed_record"]
    assert "unreadable parquet file" in dead_letters[0].detail
    assert dead_letters[0].source == f"{tmp_path}/broken.parquet:row 0"


def test_max_text_bytes(tmp_path):
    path = tmp_path / "lengths.txt"
    path.write_text("short\n" + "é" * 6 + "\n")
    documents, dead_letters, _ = read_corpus(tmp_path, str(path), max_text_bytes=10)
    assert [d.text for d in documents] == ["short"]
    assert [(d.reason, d.source) for d in dead_letters] == [("too_long", f"{path}:2")]
    assert "12 UTF-8 bytes" in dead_letters[0].detail


# Options and errors ---------------------------------------------------------------

@pytest.mark.parametrize("pattern, expected", [
    ("data/*.txt", "text"), ("a.TEXT", "text"), ("gs://b/x-*.txt.gz", "text"),
    ("x.jsonl", "jsonl"), ("x.json.bz2", "jsonl"), ("x.ndjson", "jsonl"),
    ("x.csv.gz", "csv"), ("x.parquet", "parquet"), ("d/*.parquet", "parquet"),
])
def test_infer_input_format(pattern, expected):
    assert infer_input_format(pattern) == expected


@pytest.mark.parametrize("pattern", ["data/*", "x.tsv", "x.gz", "x.parquet.gz"])
def test_infer_input_format_fails_clearly(pattern):
    with pytest.raises(ValueError, match="--input"):
        infer_input_format(pattern)


def test_unknown_format_and_unmatched_pattern_fail_at_construction(tmp_path):
    with pytest.raises(ValueError, match="--input_format 'xml'"):
        ReadCorpus(str(tmp_path / "x.txt"), input_format="xml", validate=False)
    with pytest.raises(ValueError, match=r"--input .* matches no files"):
        ReadCorpus(str(tmp_path / "nothing-*.txt"))
    with pytest.raises(ValueError, match=r"--input .* matches no files"):
        ReadCorpus(str(tmp_path / "missing.jsonl"))


def test_unmatched_pattern_fails_the_run_without_validation(tmp_path):
    with pytest.raises(Exception, match="Empty match"):
        with new_pipeline() as pipeline:
            _ = pipeline | ReadCorpus(str(tmp_path / "none-*.txt"), validate=False)


def test_read_result_is_a_named_pair(tmp_path):
    corpus_file = bad_corpus.write_text(str(tmp_path))
    pipeline = new_pipeline()
    result = pipeline | ReadCorpus(corpus_file.path)
    assert isinstance(result, ReadResult)
    assert result.documents.element_type is Document
    assert result.dead_letters.element_type is DeadLetter


# The records themselves ------------------------------------------------------------

def test_dead_letter_reasons_are_checked():
    with pytest.raises(ValueError, match="unknown dead-letter reason"):
        DeadLetter("because", "", "x:1", "")
    for reason in REASONS:
        DeadLetter(reason, "detail", "x:1", "raw")


def test_dead_letter_json():
    dead_letter = DeadLetter("invalid_type", "field 'text' is null", "f.jsonl:3",
                             '{"text": null}', "j3")
    assert json.loads(dead_letter.to_json()) == {
        "id": "j3", "source": "f.jsonl:3", "reason": "invalid_type",
        "detail": "field 'text' is null", "raw": '{"text": null}'}


def test_raw_prefix_is_bounded_and_printable():
    assert raw_prefix(b"ok \xff") == "ok \\xff"
    assert len(raw_prefix(b"a" * 5000).encode()) == 1024
    # A two-byte character cut in half by the limit is dropped, not escaped.
    assert raw_prefix(b"a" * 1023 + "é".encode()) == "a" * 1023
    assert raw_prefix("lone \ud800") == "lone \\ud800"


def test_dead_letter_escapes_what_utf8_cannot_hold():
    dead_letter = DeadLetter("invalid_utf8", "at \ud800", "caf\udce9.txt:1", "x\ud800")
    assert (dead_letter.detail, dead_letter.source, dead_letter.raw) == (
        "at \\ud800", "caf\\xe9.txt:1", "x\\ud800")
    coder = beam.coders.registry.get_coder(DeadLetter)
    assert coder.decode(coder.encode(dead_letter)) == dead_letter


def test_records_pickle_and_encode():
    document = Document("id", "text", None, "f.txt:1")
    dead_letter = DeadLetter("too_long", "d", "f.txt:2", "raw", None)
    for record in (document, dead_letter):
        assert pickle.loads(pickle.dumps(record)) == record
        coder = beam.coders.registry.get_coder(type(record))
        assert coder.decode(coder.encode(record)) == record
