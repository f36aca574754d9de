"""What a run shows a person on stderr: what it will do, its progress, what it did.

stdout is left to ``--json`` (the summary, for scripts); everything here is for
people and goes to stderr, so that ``beam-embed ... --json | jq`` reads JSON only.
On a terminal progress is a tqdm bar redrawn twice a second; otherwise it is a log
line every 10 s (transforms/progress.py), which CI logs and Dataflow keep.
"""
from __future__ import annotations

import sys
from typing import Optional, TextIO

from pipeline.logs import printable
from transforms.progress import INTERVAL_SECONDS, PROGRESS, Figures, log_line

PREFIX = "beam-embed:"
BAR_INTERVAL_SECONDS = 0.5


def say(message: str, stream: Optional[TextIO] = None) -> None:
    stream = stream or sys.stderr
    print(f"{PREFIX} {printable(message)}", file=stream, flush=True)


def plan_line(config) -> str:
    """``embedding corpus.txt (text) with all-MiniLM-L6-v2 into out/emb-*.parquet``."""
    o = config.options
    if o.input:
        source = f"{o.input} ({config.input_format})"
    else:
        source = f"BigQuery {o.bigquery_table or 'query'}"
    model = o.model or (config.handles.encoder if o.encoder else "all-MiniLM-L6-v2")
    return (f"embedding {source} with {model} ({config.facts.dim} dimensions, "
            f"{o.pooling} pooling) into {o.output}-*.{o.output_format}")


def summary_lines(summary: dict, output: str, output_format: str, dead_letter: str,
                  summary_file: str) -> list[str]:
    dead = summary["dead_lettered"]
    n_dead = sum(dead.values())
    lines = [f"embedded {summary['embedded']:,} of {summary['read']:,} records in "
             f"{summary['wall_seconds']:.1f} s ({summary['docs_per_second'] or 0:,.1f} docs/s, "
             f"{summary['tokens_per_second'] or 0:,.0f} tokens/s)"]
    details = []
    if summary["duplicates"]:
        details.append(f"{summary['duplicates']:,} duplicates dropped")
    if summary["skipped_existing"]:
        details.append(f"{summary['skipped_existing']:,} skipped as already embedded")
    if summary["truncated"]:
        details.append(f"{summary['truncated']:,} truncated")
    if n_dead:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(dead.items()))
        details.append(f"{n_dead:,} dead-lettered ({reasons}) in {dead_letter}-*.jsonl")
    if details:
        lines.append("; ".join(details))
    lines.append(f"wrote {output}-*.{output_format}; summary in {summary_file}")
    return lines


class ProgressBar:
    """PROGRESS's figures as a tqdm bar: documents, percent, docs/s, tokens/s, ETA."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._bar = None

    def __call__(self, figures: Figures) -> None:
        from tqdm import tqdm
        if self._bar is None:
            self._bar = tqdm(total=figures.expected, unit="doc", desc="embedding",
                             file=self._stream, dynamic_ncols=True, smoothing=0.3,
                             leave=True)
        bar = self._bar
        if figures.expected and bar.total != figures.expected:
            bar.total = figures.expected
        bar.set_postfix_str(f"{figures.tokens_per_second:,.0f} tokens/s", refresh=False)
        # update() rather than setting n: tqdm then measures the rate and the ETA.
        bar.update(max(0, figures.done - bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class RunDisplay:
    """Installs the progress display for one run; ``close`` ends it."""

    def __init__(self, stream: Optional[TextIO] = None):
        stream = stream or sys.stderr
        self._bar = ProgressBar(stream) if _is_terminal(stream) else None
        if self._bar is not None:
            PROGRESS.show_with(self._bar, BAR_INTERVAL_SECONDS)
        else:
            PROGRESS.show_with(log_line, INTERVAL_SECONDS)

    def close(self) -> None:
        PROGRESS.finish()
        if self._bar is not None:
            self._bar.close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
