"""The field checks every structured record passes, whatever it was read from: a
JSON object, a CSV row, a Parquet row, a BigQuery row.

``FieldRules.from_fields`` turns one record's fields into a Document, or into a
DeadLetter saying which field is missing, null, of the wrong type, not UTF-8 or
empty; ``too_long`` applies the optional size limit to any text. Plain Python, no
Beam: the file formats (transforms/formats/) and BigQuery (transforms/bigquery.py)
share it.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Union

from transforms.records import DeadLetter, Document, Record, raw_prefix


class FieldUtf8Error(NamedTuple):
    """Why a field's value cannot be written as UTF-8."""
    position: int
    what: str
    field: Optional[str] = None  # set where the field is not known from the call

    def detail(self, field: str) -> str:
        return f"field {field!r} has {self.what} at character offset {self.position}"


@dataclasses.dataclass(frozen=True)
class FieldRules:
    """Which fields hold the id, the text and the optional second text, and the
    optional limit on the UTF-8 size of text (plus text_pair)."""
    id_field: str = "id"
    text_field: str = "text"
    text_pair_field: Optional[str] = None
    max_text_bytes: Optional[int] = None

    def from_fields(self, fields: dict, source: str, raw: bytes | str) -> Record:
        """One structured record as a Document, or a DeadLetter saying which field
        is missing, null, of the wrong type or empty."""
        def dead(reason, detail, doc_id=None):
            return DeadLetter(reason, detail, source, raw_prefix(raw), doc_id)

        if self.id_field not in fields:
            return dead("missing_field", f"field {self.id_field!r} is missing")
        doc_id = fields[self.id_field]
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int, bytes)):
            return dead("invalid_type",
                        f"field {self.id_field!r} is {type_name(doc_id)}, "
                        "expected a string or an integer")
        if isinstance(doc_id, int):
            doc_id = str(doc_id)
        doc_id = as_text(doc_id)
        if isinstance(doc_id, FieldUtf8Error):
            return dead("invalid_utf8", doc_id.detail(self.id_field))
        if doc_id == "":
            return dead("missing_field", f"field {self.id_field!r} is empty")

        texts = {}
        for name in (self.text_field, self.text_pair_field):
            if name is None:
                continue
            if name not in fields:
                return dead("missing_field", f"field {name!r} is missing", doc_id)
            value = fields[name]
            if not isinstance(value, (str, bytes)):
                return dead("invalid_type",
                            f"field {name!r} is {type_name(value)}, expected a string",
                            doc_id)
            value = as_text(value)
            if isinstance(value, FieldUtf8Error):
                return dead("invalid_utf8", value.detail(name), doc_id)
            if not value.strip():
                return dead("empty_text", empty_detail(value, f"field {name!r}"), doc_id)
            texts[name] = value
        text = texts[self.text_field]
        text_pair = texts.get(self.text_pair_field)
        too_long = self.too_long(text, text_pair, source, raw, doc_id)
        return too_long or Document(doc_id, text, text_pair, source)

    def too_long(self, text, text_pair, source, raw, doc_id) -> Optional[DeadLetter]:
        if self.max_text_bytes is None:
            return None
        size = len(text.encode("utf-8")) + len((text_pair or "").encode("utf-8"))
        if size <= self.max_text_bytes:
            return None
        return DeadLetter(
            "too_long", f"text is {size} UTF-8 bytes, the limit is "
            f"{self.max_text_bytes}", source, raw_prefix(raw), doc_id)


def as_text(value: Union[str, bytes]) -> Union[str, FieldUtf8Error]:
    """``value`` as a str that can be encoded as UTF-8, or why it cannot be.

    JSON can spell lone surrogates ("\\ud800") that decode into a Python str but
    cannot be written as UTF-8; Parquet binary columns may hold any bytes.
    """
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            return FieldUtf8Error(
                error.start, f"invalid UTF-8 byte 0x{value[error.start]:02x}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return FieldUtf8Error(
            error.start, f"a lone surrogate U+{ord(value[error.start]):04X}")
    return value


def empty_detail(text: str, what: str) -> str:
    return f"{what} is empty" if text == "" else f"{what} is only whitespace"


def type_name(value) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
