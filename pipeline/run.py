"""The pipeline, top to bottom: read → deduplicate → embed → write, plus dead letters."""
from __future__ import annotations

import time

import apache_beam as beam

from pipeline.config import RunConfig
from pipeline.outputs import clear_previous_run
from pipeline.prefix_lock import PrefixLock
from pipeline.summary import summarize, write_summary
from transforms.counters import committed_counters
from transforms.dedupe import DeduplicateDocuments
from transforms.embed import EmbedText
from transforms.read import ReadCorpus
from transforms.skip_existing import SkipExisting
from transforms.write import WriteDeadLetters, WriteEmbeddings


def read_documents(p: beam.Pipeline, config: RunConfig):
    o = config.options
    if o.input:
        return p | "ReadCorpus" >> ReadCorpus(
            o.input, config.input_format, id_field=o.id_field, text_field=o.text_field or "text",
            text_pair_field=o.text_pair_field,
            reshuffle=False)  # build() deduplicates next: its GroupByKey redistributes
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from transforms.bigquery import ReadBigQueryCorpus
    return p | "ReadBigQuery" >> ReadBigQueryCorpus(
        table=o.bigquery_table, query=o.bigquery_query, id_field=o.id_field,
        text_field=o.text_field, text_pair_field=o.text_pair_field,
        project=o.view_as(GoogleCloudOptions).project, temp_dataset=o.bigquery_temp_dataset,
        endpoint=o.bigquery_endpoint, storage_endpoint=o.bigquery_storage_endpoint)


def output_columns(config: RunConfig) -> set[str]:
    o = config.options
    columns = set()
    if o.long_text == "chunk":
        columns.add("n_chunks")
    if o.keep_text:
        columns.add("text")
        if o.text_pair_field:
            columns.add("text_pair")
    return columns


def build(p: beam.Pipeline, config: RunConfig) -> None:
    o = config.options
    read = read_documents(p, config)
    unique = read.documents | "Deduplicate" >> DeduplicateDocuments()
    documents = unique.documents
    if o.skip_existing:
        documents = documents | "SkipExisting" >> SkipExisting(
            o.skip_existing, config.fingerprint, own_output=o.output)
    embedded = documents | "Embed" >> EmbedText(
        config.handles.preprocessor, config.handles.encoder, config.spec,
        long_text=o.long_text, batch_tokens=o.batch_tokens, max_batch_size=o.max_batch_size,
        keep_text=o.keep_text, runtime=config.runtime, model_copies=config.model_copies)
    embedded.rows | "WriteEmbeddings" >> WriteEmbeddings(
        o.output, o.output_format, dim=config.facts.dim, columns=output_columns(config),
        metadata=config.metadata())
    ((read.dead_letters, unique.dead_letters, embedded.dead_letters)
     | "AllDeadLetters" >> beam.Flatten()
     | "WriteDeadLetters" >> WriteDeadLetters(config.dead_letter))


def lock_prefixes(config: RunConfig) -> PrefixLock:
    """The locks of the run's prefixes (pipeline/prefix_lock.py), not yet taken."""
    return PrefixLock([config.options.output, config.dead_letter])


def start(config: RunConfig):
    """Build the pipeline, clear what earlier runs left, start it; the caller holds
    the prefixes' locks."""
    pipeline = beam.Pipeline(options=config.options)
    build(pipeline, config)
    clear_previous_run(config.options.output, config.dead_letter)  # once the pipeline is built
    return pipeline.run()


def submit(config: RunConfig):
    """Build and start the pipeline; return Beam's PipelineResult without waiting.

    The Flex Template launcher uses this: it must return once the job is submitted.
    Such a run writes no summary file; its counters (namespace ``beam_embed``) are
    the job's custom counters in the Dataflow console.

    The prefixes' locks are held while the earlier run's files are cleared and the
    job is submitted, and released once it is: a second launch on a prefix that is
    being cleared fails with exit 2, but the running job holds no lock. No process
    of this tool lives through a Dataflow job to refresh a heartbeat or release a
    lock, and a lock left behind would stop every later run until it went stale. On
    Dataflow, one job per prefix comes from the job name instead: give the job a
    name derived from the prefix (as the scheduled recipe does, beam-embed-$DAY);
    Dataflow refuses a second active job of the same name.
    """
    with lock_prefixes(config):
        return start(config)


def run(config: RunConfig) -> dict:
    """Run to completion; write, log and return the summary.

    The prefixes' locks are held from before anything is cleared until the summary
    is written, and released however the run ends. What an earlier run left under
    the output prefixes is cleared first (see pipeline/outputs.py), so re-running a
    command, after a kill or not, leaves the same files as running it once.
    """
    begin = time.monotonic()
    with lock_prefixes(config) as lock:
        result = start(config)
        result.wait_until_finish()
        summary = summarize(committed_counters(result), time.monotonic() - begin)
        lock.check_held()  # a summary is only written by the lock's holder
        write_summary(summary, config.options.output)
    return summary
