"""The run summary: what was read, embedded, dropped, and how fast."""
from __future__ import annotations

import json
import logging

from apache_beam.io.filesystems import FileSystems

from transforms import counters
from transforms.records import REASONS


def summarize(totals: dict[str, int], wall_seconds: float) -> dict:
    embedded = totals.get(counters.EMBEDDED, 0)
    tokens = totals.get(counters.TOKENS, 0)
    computed = totals.get(counters.TOKENS_COMPUTED, 0)
    dead = {reason: totals.get(counters.DEAD_LETTERED[reason], 0) for reason in REASONS}
    return {
        "read": totals.get(counters.READ, 0),
        "embedded": embedded,
        "dead_lettered": {reason: n for reason, n in dead.items() if n},
        "duplicates": totals.get(counters.DUPLICATES, 0),
        "skipped_existing": totals.get(counters.SKIPPED_EXISTING, 0),
        **({"table_rows": totals[counters.ROWS_WRITTEN]} if counters.ROWS_WRITTEN in totals else {}),
        "skip_existing_ignored_files": totals.get(counters.SKIP_EXISTING_IGNORED_FILES, 0),
        "tokens": tokens,
        "padding_ratio": round(tokens / computed, 4) if computed else None,
        "truncated": totals.get(counters.TRUNCATED, 0),
        "oom_splits": totals.get(counters.OOM_SPLITS, 0),
        "wall_seconds": round(wall_seconds, 3),
        "docs_per_second": round(embedded / wall_seconds, 2) if wall_seconds else None,
        "tokens_per_second": round(tokens / wall_seconds, 1) if wall_seconds else None,
    }


def summary_path(output_prefix: str) -> str:
    return f"{output_prefix}-summary.json"


def partial_summary_path(output_prefix: str) -> str:
    return f"{summary_path(output_prefix)}.partial"


def write_summary(summary: dict, output_prefix: str) -> str:
    """Write ``OUTPUT-summary.json`` through FileSystems (local or gs://); returns its path.

    The summary is written after every shard is in place and marks a complete
    output, so it appears whole or not at all: written aside, then renamed (an
    atomic rename on local disks; a Cloud Storage object is only visible once
    complete anyway).
    """
    path, partial = summary_path(output_prefix), partial_summary_path(output_prefix)
    with FileSystems.create(partial) as f:
        f.write(json.dumps(summary, indent=2).encode("utf-8"))
    FileSystems.rename([partial], [path])
    logging.info("run summary (%s): %s", path, json.dumps(summary))
    return path
