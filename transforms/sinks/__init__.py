"""The sink registry: name -> Sink class (see base.py for the contract).

Adding a sink is one module in this package and one ``register`` line below. File
sinks (``extensions``) are chosen by ``--output_format`` and write under the
``--output`` prefix; table sinks (``schemes``) are chosen by the scheme of
``--output_table``. Table sinks import their client libraries lazily, so this
registry imports nothing heavy.
"""
from __future__ import annotations

from typing import Optional

from transforms.sinks.base import DestinationError, Sink, SinkRows  # noqa: F401
from transforms.sinks.bigquery import BigQuerySink
from transforms.sinks.parquet import ParquetSink
from transforms.sinks.postgres import PostgresSink
from transforms.sinks.tfrecord import TFRecordSink

SINKS: dict[str, type[Sink]] = {}


def register(sink_class: type[Sink]) -> type[Sink]:
    SINKS[sink_class.name] = sink_class
    return sink_class


register(ParquetSink)
register(TFRecordSink)
register(PostgresSink)
register(BigQuerySink)

FILE_FORMATS = tuple(name for name, cls in SINKS.items() if cls.extensions)
FILE_EXTENSIONS = tuple(ext for cls in SINKS.values() for ext in cls.extensions)
TABLE_SCHEMES = tuple(s for cls in SINKS.values() for s in cls.schemes)


def file_sink_class(output_format: str) -> type[Sink]:
    cls = SINKS.get(output_format)
    if cls is None or not cls.extensions:
        raise ValueError(f"--output_format {output_format!r} is not supported; use one of "
                         f"{', '.join(FILE_FORMATS)}")
    return cls


def table_sink_class(url: str) -> Optional[type[Sink]]:
    """The table sink whose scheme ``url`` has, or None."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return next((cls for cls in SINKS.values() if scheme in cls.schemes), None)
