"""Names of the pipeline's Beam counters, in one place for every stage and test.

The counters reconcile a run: every input record is counted once in READ and ends
up in exactly one of EMBEDDED, DUPLICATES, SKIPPED_EXISTING or a
DEAD_LETTERED[reason] counter, so

    read == embedded + duplicates + skipped_existing + sum(dead_lettered_<reason>)

Query them after a run with ``result.metrics().query(counter_filter(name))``.
"""
from __future__ import annotations

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from transforms.records import REASONS

NAMESPACE = "beam_embed"

# Incremented by ReadCorpus once per input record (line or row), good or bad.
READ = "read"
# Incremented by DeduplicateDocuments for each extra copy of an identical record.
DUPLICATES = "duplicates"
# Incremented by the embedding stage for each document it writes an embedding for.
EMBEDDED = "embedded"

DEAD_LETTERED_PREFIX = "dead_lettered_"
# reason -> counter name, e.g. "empty_text" -> "dead_lettered_empty_text".
DEAD_LETTERED = {reason: DEAD_LETTERED_PREFIX + reason for reason in REASONS}


def counter(name: str):
    """The Beam counter ``name`` in this pipeline's namespace."""
    return Metrics.counter(NAMESPACE, name)


def dead_lettered_counter(reason: str):
    """The counter of dead letters with ``reason`` (KeyError for an unknown reason)."""
    return counter(DEAD_LETTERED[reason])


def counter_filter(name: str | None = None) -> MetricsFilter:
    """A MetricsFilter for one counter of this namespace, or all of them."""
    metrics_filter = MetricsFilter().with_namespace(NAMESPACE)
    return metrics_filter.with_name(name) if name else metrics_filter


def committed_counters(pipeline_result) -> dict[str, int]:
    """All counters of this namespace after a run, summed over steps, by name.

    Uses committed values (the ones a runner guarantees); runners that do not
    report committed values fall back to attempted ones.
    """
    totals: dict[str, int] = {}
    for result in pipeline_result.metrics().query(counter_filter())["counters"]:
        value = result.committed if result.committed is not None else result.attempted
        name = result.key.metric.name
        totals[name] = totals.get(name, 0) + (value or 0)
    return totals

# Embedding-stage counters (EmbedText). TOKENS counts real tokens the encoder saw,
# TOKENS_COMPUTED the padded batch_size x seq_length it computed: their ratio is
# the run's padding efficiency.
TOKENS = "tokens"
TOKENS_COMPUTED = "tokens_computed"
TRUNCATED = "truncated"
OOM_SPLITS = "oom_splits"
# Incremented once per input document whose id already has an embedding with the
# same model fingerprint in --skip_existing outputs.
SKIPPED_EXISTING = "skipped_existing"
# Incremented once per --skip_existing file that is no evidence because it cannot be
# read as a beam-embed output (not Parquet, damaged, unreadable, wrong id column);
# files of another fingerprint and this run's own shards are not counted.
SKIP_EXISTING_IGNORED_FILES = "skip_existing_ignored_files"
# Incremented by a table sink (transforms/sinks/) once its rows are committed: the rows
# of this run the table holds, which equals EMBEDDED for a complete run.
ROWS_WRITTEN = "rows_written"
