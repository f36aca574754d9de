"""The input formats: each is one module here (text.py, jsonl.py, csv.py,
parquet.py) plus one line in ``REGISTRY`` naming its extensions and compressions.

The registry itself is light (no Beam, no pyarrow): ``beam-embed --help`` and
``--input_format``'s choices come from it. A format's module, which may import
what its parser needs, is imported when the first file of that format is parsed.

A format's module defines ``parse(file: FileInput, rules: FieldRules) -> Iterator[Record]``
(see transforms/formats/base.py): exactly one Document or DeadLetter per input record.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from transforms.decompress import CODECS

# The whole-file compressions the line formats are read in (transforms/decompress.py).
LINE_COMPRESSIONS = tuple(CODECS)


@dataclasses.dataclass(frozen=True)
class InputFormat:
    name: str
    extensions: tuple[str, ...]  # lower case, with the dot
    compressions: tuple[str, ...]  # suffixes of whole-file compressions it may carry
    module: str  # transforms.formats.<module> defines parse()
    # Why a compressed file of this format is refused (a format that has none).
    no_compression_reason: str = ""

    def parser(self) -> Callable:
        return importlib.import_module(f"{__name__}.{self.module}").parse


REGISTRY = {f.name: f for f in (
    InputFormat("text", (".txt", ".text"), LINE_COMPRESSIONS, "text"),
    InputFormat("jsonl", (".jsonl", ".json", ".ndjson"), LINE_COMPRESSIONS, "jsonl"),
    InputFormat("csv", (".csv",), LINE_COMPRESSIONS, "csv"),
    InputFormat("parquet", (".parquet",), (), "parquet",
                no_compression_reason="Parquet compresses internally"),
)}
INPUT_FORMATS = tuple(REGISTRY)
ALL_COMPRESSIONS = tuple(sorted({c for f in REGISTRY.values() for c in f.compressions}))


def input_format(name: str) -> InputFormat:
    """The registered format ``name``; ValueError naming ``--input_format`` otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"--input_format {name!r} is not supported; use one of "
                         f"{', '.join(INPUT_FORMATS)}")
    return REGISTRY[name]


def infer_input_format(file_pattern: str) -> str:
    """The input format implied by the pattern's extension (ignoring .gz and co).

    Raises ValueError, naming the ``--input_format`` option, when it cannot tell, and
    for a local directory (which has no format: its files do).
    """
    # Here, not at the top: it imports Beam's file systems, which --help must not load.
    from transforms.input_files import check_not_a_directory
    check_not_a_directory(file_pattern)
    name = file_pattern.lower()
    compression = next((s for s in ALL_COMPRESSIONS if name.endswith(s)), "")
    stem = name[:len(name) - len(compression)]
    for fmt in REGISTRY.values():
        if any(stem.endswith(extension) for extension in fmt.extensions):
            if compression and compression not in fmt.compressions:
                raise ValueError(
                    f"--input {file_pattern!r}: {fmt.name} files cannot be "
                    f"{compression}-compressed as a whole ({fmt.no_compression_reason})")
            return fmt.name
    raise ValueError(
        f"cannot infer the input format of --input {file_pattern!r} from its "
        f"extension; set --input_format (input_format=) to one of "
        f"{', '.join(INPUT_FORMATS)}")
