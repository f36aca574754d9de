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


# Parsing bytes directly (no pipeline): damaged, foreign-encoded and odd inputs ------

import bz2  # noqa: E402
import codecs  # noqa: E402
import gzip  # noqa: E402
import io  # noqa: E402
import lzma  # noqa: E402
import zlib  # noqa: E402

import zstandard  # noqa: E402

from tests.pipeline_helpers import fails_with  # noqa: E402
from transforms.read import RecordParser, check_pattern_matches  # noqa: E402

COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    ".zst": lambda data: zstandard.ZstdCompressor(write_checksum=True).compress(data),
    ".deflate": zlib.compress,  # Beam's "deflate" is the zlib format
}
# Formats whose members can be concatenated (gzip -c a b, pbzip2, xz, zstd frames).
MULTI_MEMBER = (".gz", ".bz2", ".xz", ".zst")
LINES = b"".join(b"line number %d\n" % i for i in range(2000))
A, B = b"".join(LINES.splitlines(True)[:100]), b"".join(LINES.splitlines(True)[100:200])


def parse(data: bytes, name="in.txt", input_format=None, ledger=None, **fields):
    parser = RecordParser(input_format or infer_input_format(name), fields.get("id_field", "id"),
                          "text", None, None)
    return list(parser.parse(name, io.BytesIO(data), ledger=ledger))


def split(records):
    documents = [r for r in records if isinstance(r, Document)]
    return documents, [r for r in records if isinstance(r, DeadLetter)]


def test_csv_record_with_a_bad_byte_is_one_dead_letter_whole():
    """Finding 2: the bad middle line of a quoted field was cut out, and the record
    was both embedded (altered) and dead-lettered (with no id)."""
    documents, letters = split(parse(
        b'id,text\n1,"first line\nbad \xff line\nlast line"\n2,ok\n', "in.csv"))
    assert [(d.id, d.text) for d in documents] == [("2", "ok")]
    assert [(d.reason, d.source) for d in letters] == [("invalid_utf8", "in.csv:2")]
    assert "byte offset 4 of line 2 of the record (byte 26 of the file)" in letters[0].detail
    assert letters[0].raw == '1,"first line\nbad \\xff line\nlast line"'
    assert letters[0].id == "1"  # the id column itself is UTF-8


@pytest.mark.parametrize("data, expected", [
    # A bad byte on the first or the last line of a multi-line field.
    (b'id,text\n1,"\xfe\nrest"\n2,ok\n', [("invalid_utf8", "x.csv:2")]),
    (b'id,text\n1,"start\nend \xc0"\n2,ok\n', [("invalid_utf8", "x.csv:2")]),
    # In a column that is not used: the record is still not UTF-8.
    (b'id,text,other\n1,fine,\xff\n2,ok,x\n', [("invalid_utf8", "x.csv:2")]),
    # An unterminated quote at the end: one malformed record, what came before kept.
    (b'id,text\n2,ok\n3,"never\nclosed\n', [("malformed_record", "x.csv:3")]),
])
def test_csv_utf8_is_decided_per_record(data, expected):
    documents, letters = split(parse(data, "x.csv"))
    assert [(d.id, d.text) for d in documents] == [("2", "ok")]
    assert [(d.reason, d.source) for d in letters] == expected


def test_csv_unterminated_quote_names_the_lines_it_took():
    _, letters = split(parse(b'id,text\n2,ok\n3,"never\nclosed\n4,more\n', "x.csv"))
    assert "lines 3-5" in letters[0].detail and "never closed" in letters[0].detail


def test_csv_header_that_is_not_utf8():
    # In an unused column name: rows read normally.
    documents, _ = split(parse(b'id,text,b\xffd\n1,one,x\n', "x.csv"))
    assert [d.text for d in documents] == ["one"]
    # In the text column's name: each row says the field is missing, and why.
    _, letters = split(parse(b'id,te\xffxt\n1,one\n', "x.csv"))
    assert [d.reason for d in letters] == ["missing_field"]
    assert "the header (line 1) is not UTF-8" in letters[0].detail


def test_json_value_type_is_spelled_right():
    _, letters = split(parse(b"[1, 2]\n", "x.jsonl"))
    assert letters[0].detail == "JSON value is an array, not an object"


# Compressed inputs ----------------------------------------------------------------

def check_cut(records, original: bytes):
    """What a damaged stream must give: complete lines only, a prefix of the original,
    and exactly one damaged_stream dead letter after them that names the damage."""
    documents, letters = split(records)
    damage = [d for d in letters if d.reason == "damaged_stream"]
    assert len(damage) == 1 and records[-1] is damage[0], records[-3:]
    kept = b"".join(d.text.encode() + b"\n" for d in documents)
    assert original.startswith(kept)
    assert all(d.text.encode() + b"\n" in original.splitlines(keepends=True) for d in documents)
    partial = damage[0].raw.encode()
    assert original[len(kept):].startswith(partial)
    return documents, damage[0]


@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_compressed_input_cut_in_half(suffix):
    """Finding 3: a gzip cut in half gave a partial line as a row and lost the rest
    silently; a bzip2 cut in half gave nothing, with exit 0."""
    whole = COMPRESSORS[suffix](LINES)
    documents, damage = check_cut(parse(whole[:len(whole) // 2], "in.txt" + suffix), LINES)
    assert "ends early" in damage.detail and "the rest of the data is lost" in damage.detail
    assert f"at byte {len(whole) // 2} of the {len(whole) // 2}-byte file" in damage.detail


@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_compressed_input_followed_by_junk(suffix):
    """Finding 3: a valid .gz followed by junk gave one dead letter and none of its lines."""
    whole = COMPRESSORS[suffix](LINES)
    documents, damage = check_cut(parse(whole + b"junk!", "in.txt" + suffix), LINES)
    assert len(documents) == 2000
    assert f"at byte {len(whole)} of the {len(whole) + 5}-byte file" in damage.detail
    assert "(5 bytes) could not be decoded" in damage.detail
    assert "the rest of the data is lost" not in damage.detail


@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_compressed_input_cut_at_every_offset(suffix):
    """Every cut, header and trailer included: never a partial line as a row, never
    silence, never an exception."""
    original = A
    whole = COMPRESSORS[suffix](original)
    assert len(split(parse(whole, "a.txt" + suffix))[0]) == original.count(b"\n")
    for cut in range(1, len(whole)):
        ledger = []
        records = parse(whole[:cut], "a.txt" + suffix, ledger=ledger)
        documents, damage = check_cut(records, original)
        # The ledger tiles the decoded bytes: records, then the cut line, then "lost".
        assert [end for _, end, _ in ledger[:-1]] == [start for start, _, _ in ledger[1:]]
        assert ledger[-1][1:] == (None, "lost") and (not ledger[:-1] or ledger[0][0] == 0)


@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_compressed_odd_but_whole_inputs(suffix):
    compress = COMPRESSORS[suffix]
    # An empty file: no records, no damage (like an empty plain file).
    assert parse(b"", "a.txt" + suffix) == []
    # Not compressed at all: the whole file is the damage, nothing is read as text.
    records = parse(A, "a.txt" + suffix)
    assert [r.reason for r in records] == ["damaged_stream"]
    assert "is not" in records[0].detail or "corrupt" in records[0].detail
    # Members one after the other, as gzip -c a b > ab.gz writes them.
    if suffix in MULTI_MEMBER:
        documents, letters = split(parse(compress(A) + compress(B), "a.txt" + suffix))
        assert letters == [] and len(documents) == 200
    # Zero padding after the last member (tape blocks, preallocated files).
    records = parse(compress(A) + b"\0" * 1024, "a.txt" + suffix)
    documents, letters = split(records)
    assert len(documents) == 100
    if suffix == ".xz":
        assert letters == []  # xz allows padding in multiples of 4 bytes
    elif suffix != ".lzma":
        assert [d.reason for d in letters] == ["damaged_stream"]
        assert "all zero bytes" in letters[0].detail


def test_gzip_with_a_bad_crc_keeps_its_data():
    whole = bytearray(gzip.compress(LINES))
    whole[-8] ^= 0xFF  # the CRC-32 of the trailer
    documents, letters = split(parse(bytes(whole), "a.txt.gz"))
    assert len(documents) == 2000
    assert [d.reason for d in letters] == ["damaged_stream"]
    assert "incorrect data check" in letters[0].detail
    assert f"decoded bytes 0-{len(LINES) - 1} came from that member" in letters[0].detail


def test_damaged_jsonl_and_csv_keep_whole_records():
    jsonl = b"".join(b'{"id": "%d", "text": "t %d"}\n' % (i, i) for i in range(500))
    whole = gzip.compress(jsonl)
    records = parse(whole[:len(whole) // 2], "a.jsonl.gz")
    assert records[-1].reason == "damaged_stream"
    assert all(isinstance(r, Document) for r in records[:-1])
    csv_bytes = b"id,text\n" + b"".join(b'%d,"two\nlines %d"\n' % (i, i) for i in range(500))
    whole = bz2.compress(csv_bytes)
    for cut in (len(whole) // 3, len(whole) - 10):
        records = parse(whole[:cut], "a.csv.bz2")
        assert records[-1].reason == "damaged_stream"
        for record in records[:-1]:  # a record cut between its lines is malformed, never a row
            assert isinstance(record, Document) and record.text.startswith("two\nlines ") \
                or record.reason == "malformed_record"


def test_truncated_gzip_through_the_pipeline(tmp_path):
    whole = gzip.compress(LINES)
    (tmp_path / "cut.txt.gz").write_bytes(whole[:len(whole) // 2])
    documents, dead_letters, counts = read_corpus(tmp_path, str(tmp_path / "cut.txt.gz"))
    assert [d.reason for d in dead_letters] == ["damaged_stream"]
    assert counts[counters.DEAD_LETTERED["damaged_stream"]] == 1
    assert counts[counters.READ] == len(documents) + 1
    assert all(d.text.startswith("line number ") and d.text[12:].isdigit() for d in documents)


# Encodings ------------------------------------------------------------------------

TEXT = "hello\n中上文\n丁一\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be-bom", "utf-32", "utf-32-be-bom",
                                      "utf-8-sig"])
def test_byte_order_marked_files_are_decoded(encoding):
    """Finding 4: UTF-16 read as bytes split 上 (U+4E0A) at its 0x0A byte."""
    if encoding.endswith("-be-bom"):
        name = encoding[:-4]
        data = codecs.BOM_UTF16_BE if "16" in name else codecs.BOM_UTF32_BE
        data += TEXT.encode(name)
    else:
        data = TEXT.encode(encoding)
    documents, letters = split(parse(data, "a.txt"))
    assert letters == []
    assert [d.text for d in documents] == ["hello", "中上文", "丁一"]
    # Same text, same id, whatever the file's encoding.
    assert documents[1].id == hashlib.sha256("中上文".encode()).hexdigest()
    # Compressed too: the encoding is decided on the decoded bytes.
    assert split(parse(gzip.compress(data), "a.txt.gz"))[0] == [
        dataclasses.replace(d, source=d.source.replace("a.txt", "a.txt.gz")) for d in documents]
    jsonl = '{"id": "a", "text": "中上文"}\n'
    csv_text = 'id,text\na,"two\n中上文"\n'
    for name, text, expected in (("a.jsonl", jsonl, "中上文"),
                                 ("a.csv", csv_text, "two\n中上文")):
        data = (codecs.BOM_UTF16_BE + text.encode("utf-16-be") if encoding == "utf-16-be-bom"
                else text.encode(encoding) if not encoding.endswith("-bom")
                else codecs.BOM_UTF32_BE + text.encode("utf-32-be"))
        assert [d.text for d in split(parse(data, name))[0]] == [expected]


@pytest.mark.parametrize("encoding, guess", [
    ("utf-16-le", "UTF-16-LE"), ("utf-16-be", "UTF-16-BE"),
    ("utf-32-le", "UTF-32-LE"), ("utf-32-be", "UTF-32-BE")])
@pytest.mark.parametrize("name", ["a.txt", "a.jsonl", "a.csv", "a.txt.gz"])
def test_files_without_a_byte_order_mark_and_full_of_nuls_are_rejected_whole(
        encoding, guess, name):
    """An ASCII UTF-16 file embedded every line with NULs between its characters."""
    text = ('id,text\n1,hello\n2,world\n' if "csv" in name
            else '{"id": "1", "text": "hello"}\n' if "jsonl" in name else "hello\nworld\n")
    data = text.encode(encoding)
    if name.endswith(".gz"):
        data = gzip.compress(data)
    records = parse(data, name)
    assert [(r.reason, r.source) for r in records] == [("unsupported_encoding", f"{name}:1")]
    assert guess in records[0].detail and "Re-encode it as UTF-8" in records[0].detail


@pytest.mark.parametrize("suffix, what", [(".gz", "gzip"), (".bz2", "bzip2"), (".xz", "xz"),
                                          (".zst", "zstd")])
def test_compressed_data_without_its_suffix_is_not_read_as_text(suffix, what):
    """Read as UTF-8, the lines of compressed bytes that happen to decode were embedded."""
    records = parse(COMPRESSORS[suffix](LINES), "a.txt")
    assert [r.reason for r in records] == ["unsupported_encoding"]
    assert f"{what}-compressed data (name it {suffix})" in records[0].detail
    pq_buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["1"], "text": ["x"]}), pq_buffer)
    assert "a Parquet file" in parse(pq_buffer.getvalue(), "a.jsonl")[0].detail


def test_cjk_utf16_without_a_byte_order_mark_is_rejected():
    # Few NULs (only in the line breaks), but every line break sits next to one.
    records = parse(("中上文\n丁一二三\n" * 20).encode("utf-16-le"), "a.txt")
    assert [r.reason for r in records] == ["unsupported_encoding"]


def test_invalid_code_units_in_a_utf16_file_are_one_record_each():
    data = codecs.BOM_UTF16_LE + "good\n".encode("utf-16-le") + b"\x00\xd8" \
        + "after a lone surrogate\nlast\n".encode("utf-16-le") + b"x"  # odd last byte
    documents, letters = split(parse(data, "a.txt"))
    assert [d.text for d in documents] == ["good", "last"]
    assert [(d.reason, d.source) for d in letters] == [("invalid_utf8", "a.txt:2"),
                                                      ("invalid_utf8", "a.txt:4")]
    assert "invalid UTF-16-LE bytes 0x00 0xd8 at character offset 0" in letters[0].detail


def test_latin1_and_stray_nuls_in_utf8():
    # Latin-1: each line with a non-ASCII byte is its own invalid_utf8; ASCII lines read.
    documents, letters = split(parse("plain\ncafé\nnaïve here\nend\n".encode("latin-1"),
                                     "a.txt"))
    assert [d.text for d in documents] == ["plain", "end"]
    assert [d.source for d in letters] == ["a.txt:2", "a.txt:3"]
    # A NUL in the middle of a UTF-8 file is text (not NUL-dense): kept.
    documents, _ = split(parse(b"one\ntwo \x00 three\n" + b"more text\n" * 20, "a.txt"))
    assert documents[1].text == "two \x00 three"


# Input kinds: refused before the run, exit 2, naming --input ------------------------

def test_input_that_is_a_directory(capsys, tmp_path):
    """Finding 7: --input=some_dir exited 1 with IsADirectoryError and left beam-temp-*."""
    (tmp_path / "some_dir").mkdir()
    (tmp_path / "some_dir" / "a.txt").write_text("hello\n")
    for pattern in (tmp_path / "some_dir", f"{tmp_path}/some_dir/"):
        fails_with(capsys, [f"--input={pattern}", "--input_format=text",
                            f"--output={tmp_path}/out/emb"],
                   "--input", "is a directory", "some_dir/*")
        with pytest.raises(ValueError, match="is a directory"):
            infer_input_format(str(pattern))
    assert not os.path.exists(tmp_path / "out")


def test_input_kinds_that_are_not_files(tmp_path, caplog):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("hello\n")
    (tmp_path / "d" / "sub.txt").mkdir()  # a directory among files: Beam skips it, we say so
    os.symlink("nowhere.txt", tmp_path / "d" / "dangling.txt")  # skipped the same way
    check_pattern_matches(str(tmp_path / "d" / "*.txt"))
    assert "sub.txt" in caplog.text and "dangling.txt" in caplog.text
    assert "which are not read" in caplog.text
    os.mkfifo(tmp_path / "fifo.txt")  # must not block: it is never opened
    with pytest.raises(ValueError, match="named pipe"):
        check_pattern_matches(str(tmp_path / "fifo.txt"))
    with pytest.raises(ValueError, match="a device"):
        check_pattern_matches("/dev/null")
    os.symlink("loop2.txt", tmp_path / "loop1.txt")
    os.symlink("loop1.txt", tmp_path / "loop2.txt")
    with pytest.raises(ValueError, match="leads nowhere"):
        check_pattern_matches(str(tmp_path / "loop1.txt"))
    os.symlink(tmp_path / "d" / "a.txt", tmp_path / "link.txt")  # a link to a file is fine
    check_pattern_matches(str(tmp_path / "link.txt"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_input_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("hello\n")
    path.chmod(0)
    with pytest.raises(ValueError, match="cannot be read"):
        check_pattern_matches(str(path))


def test_empty_input_files_are_read_as_no_records(tmp_path, caplog):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty.txt.gz").write_bytes(b"")
    (tmp_path / "one.txt").write_text("hello\n")
    check_pattern_matches(str(tmp_path / "*.txt*"))
    assert "2 of the 3 matched files are empty" in caplog.text
    documents, dead_letters, counts = read_corpus(tmp_path, str(tmp_path / "*.txt*"),
                                                  input_format="text")
    assert [d.text for d in documents] == ["hello"] and dead_letters == []


def test_damaged_and_foreign_inputs_through_the_cli(tmp_path, tiny_random_model):
    """Findings 3 and 4 as the issue ran them: exit 0 before, with rows missing or
    garbage embedded, and nothing in the summary to say so."""
    from tests.pipeline_helpers import module_args, read_dead_letters, read_parquet_rows, run_cli
    corpus = tmp_path / "in"
    corpus.mkdir()
    whole = gzip.compress(LINES)
    (corpus / "cut.txt.gz").write_bytes(whole[:len(whole) // 2])
    (corpus / "junk.txt.gz").write_bytes(gzip.compress(A) + b"junk")
    cut_bz2 = bz2.compress(B)
    (corpus / "cut.txt.bz2").write_bytes(cut_bz2[:len(cut_bz2) // 2])
    (corpus / "utf16.txt").write_bytes(TEXT.encode("utf-16"))
    (corpus / "ascii16.txt").write_bytes("hello\nworld\n".encode("utf-16-le"))
    out = str(tmp_path / "out" / "emb")
    summary = run_cli(f"--input={corpus}/*", "--input_format=text", f"--output={out}",
                      "--keep_text", *module_args(tiny_random_model))
    assert summary["dead_lettered"] == {"damaged_stream": 3, "unsupported_encoding": 1}
    texts = {row["text"] for row in read_parquet_rows(out).values()}
    assert {"hello", "中上文", "丁一"} <= texts
    assert all(t in {"hello", "中上文", "丁一"} or t.startswith("line number ") and
               t[12:].isdigit() for t in texts)
    assert summary["read"] == summary["embedded"] + 4 + summary["duplicates"]
    letters = read_dead_letters(f"{out}-errors")
    junk = next(d for d in letters if d["source"].startswith(f"{corpus}/junk.txt.gz"))
    assert "not gzip data" in junk["detail"] and "rest of the data is lost" not in junk["detail"]


def test_a_damaged_file_of_known_size_is_not_read_to_its_end():
    """On Cloud Storage the rest of a damaged 10 GB object is not downloaded for a message."""
    whole = gzip.compress(LINES)
    stream = io.BytesIO(whole[:100] + b"\xff" * 3_000_000)  # corrupt from byte 100 on
    parser = RecordParser("text", "id", "text", None, None)
    records = list(parser.parse("a.txt.gz", stream, size=100 + 3_000_000))
    assert records[-1].reason == "damaged_stream"
    assert "of the 3000100-byte file" in records[-1].detail
    assert stream.tell() < 1_000_000


def test_parquet_strings_that_are_not_utf8_are_one_dead_letter_each():
    """Parquet says strings are UTF-8, but a writer that does not validate can store any
    bytes; pyarrow fails only when it converts the cell, and that failed the whole job
    (exit 1, a 190-line traceback). Each such row is one invalid_utf8 dead letter, with
    its id when the id is readable; the other rows of the batch are embedded."""
    texts = pa.array([b"good one", b"bad \xff text", b"fine"], type=pa.binary())
    nested = pa.array([[b"x"], [b"y"], [b"\xfe"]], type=pa.list_(pa.binary()))
    table = pa.table({
        "id": ["a", "b", "c"],
        "text": pa.Array.from_buffers(pa.string(), 3, texts.buffers()),  # unvalidated
        "pair": pa.ListArray.from_arrays(nested.offsets, pa.Array.from_buffers(
            pa.string(), 3, nested.values.buffers()))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    records = parse(buffer.getvalue(), name="in.parquet")
    documents, dead_letters = split(records)
    assert [(d.id, d.text) for d in documents] == [("a", "good one"), ("c", "fine")]
    assert [(d.reason, d.id, d.source) for d in dead_letters] == [
        ("invalid_utf8", "b", "in.parquet:row 1")]
    assert "0xff at character offset 4" in dead_letters[0].detail
    assert "bad \\\\xff text" in dead_letters[0].raw
    # A nested column that cannot be converted names itself.
    parser = RecordParser("parquet", "id", "text", "pair", None)
    records = list(parser.parse("in.parquet", io.BytesIO(buffer.getvalue())))
    assert [getattr(r, "reason", "document") for r in records] == [
        "invalid_type", "invalid_utf8", "invalid_utf8"]
    assert "'pair'" in records[2].detail
