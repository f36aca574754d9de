"""The input-format registry and its parsers, on bytes, without a pipeline; the
shared field rules; and the light modules --help builds on."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipeline_helpers import heavy_modules_loaded_by
from transforms.formats import INPUT_FORMATS, REGISTRY, infer_input_format, input_format
from transforms.formats.base import FileInput
from transforms.records import DeadLetter, Document
from transforms.text_source import Position
from transforms.validate import FieldRules


def parse(name: str, data: bytes, file_name: str, rules=FieldRules()):
    file = FileInput(file_name, io.BytesIO(data), Position(), file_name, len(data))
    return list(input_format(name).parser()(file, rules))


def _parquet(table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name, data, file_name", [
    ("text", b"one\n\ntwo\n", "c.txt"),
    ("jsonl", b'{"id": "1", "text": "one"}\n\n{"id": "e", "text": " "}\n{"id": "2", "text": "two"}\n', "c.jsonl"),
    ("csv", b"id,text\n1,one\ne,\n2,two\n", "c.csv"),
    ("parquet", _parquet(pa.table({"id": ["1", "e", "2"], "text": ["one", "", "two"]})), "c.parquet"),
])
def test_each_registered_parser_on_bytes(name, data, file_name):
    records = parse(name, data, file_name)
    assert [r.text for r in records if isinstance(r, Document)] == ["one", "two"]
    letters = [r for r in records if isinstance(r, DeadLetter)]
    assert [r.reason for r in letters] == ["empty_text"] and letters[0].source.startswith(file_name)


def test_the_registry_names_every_format_once_with_its_extensions():
    assert INPUT_FORMATS == tuple(REGISTRY) == ("text", "jsonl", "csv", "parquet")
    extensions = [e for f in REGISTRY.values() for e in f.extensions]
    assert len(extensions) == len(set(extensions))
    for fmt in REGISTRY.values():
        assert callable(fmt.parser())
        for extension in fmt.extensions:
            assert infer_input_format(f"data/x{extension}") == fmt.name
            for compression in fmt.compressions:
                assert infer_input_format(f"data/x{extension}{compression}") == fmt.name
    with pytest.raises(ValueError, match="parquet files cannot be .gz-compressed"):
        infer_input_format("x.parquet.gz")
    with pytest.raises(ValueError, match="--input_format 'xml' is not supported"):
        input_format("xml")


def test_field_rules_serve_any_structured_row():
    """BigQuery's rows go through the same rules as files' (no parser of a format)."""
    rules = FieldRules("id", "text", "pair", max_text_bytes=5)
    assert rules.from_fields({"id": 7, "text": "ab", "pair": "c"}, "s", "raw") == \
        Document("7", "ab", "c", "s")
    assert [rules.from_fields(row, "s", "raw").reason for row in (
        {"text": "a", "pair": "b"}, {"id": "1", "text": None, "pair": "b"},
        {"id": "1", "text": "a", "pair": "\ud800"}, {"id": "1", "text": "abc", "pair": "def"},
        {"id": True, "text": "a", "pair": "b"})] == [
        "missing_field", "invalid_type", "invalid_utf8", "too_long", "invalid_type"]


def test_the_options_modules_import_neither_beam_nor_tensorflow():
    assert heavy_modules_loaded_by(
        "pipeline.options, pipeline.main, transforms.constants, transforms.formats") == []


def test_the_options_name_the_file_sinks_the_sink_registry_holds():
    # --help names output formats from transforms/constants.py (light); the registry
    # (transforms/sinks) is what runs them. The two lists must not drift apart.
    from transforms.constants import OUTPUT_FORMATS
    from transforms.sinks import FILE_FORMATS
    assert FILE_FORMATS == OUTPUT_FORMATS
