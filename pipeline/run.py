"""The pipeline, top to bottom: read → deduplicate → embed → write, plus dead letters."""
from __future__ import annotations

import logging
import time

import apache_beam as beam

from pipeline.config import RunConfig
from pipeline.summary import summarize, write_summary
from transforms.counters import committed_counters
from transforms.dedupe import DeduplicateDocuments
from transforms.embed import EmbedText
from transforms.read import ReadCorpus
from transforms.write import WriteDeadLetters, WriteEmbeddings


def read_documents(p: beam.Pipeline, config: RunConfig):
    o = config.options
    if o.input:
        return p | "ReadCorpus" >> ReadCorpus(
            o.input, config.input_format, id_field=o.id_field, text_field=o.text_field or "text",
            text_pair_field=o.text_pair_field)
    from transforms.bigquery import ReadBigQueryCorpus
    return p | "ReadBigQuery" >> ReadBigQueryCorpus(
        table=o.bigquery_table, query=o.bigquery_query, id_field=o.id_field,
        text_field=o.text_field, text_pair_field=o.text_pair_field)


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
    skipped_dead = ()
    if o.skip_existing:
        from transforms.skip_existing import SkipExisting
        documents = documents | "SkipExisting" >> SkipExisting(o.skip_existing, config.fingerprint)
    embedded = documents | "Embed" >> EmbedText(
        config.handles.preprocessor, config.handles.encoder, config.spec,
        long_text=o.long_text, batch_tokens=o.batch_tokens, max_batch_size=o.max_batch_size,
        keep_text=o.keep_text, runtime=config.runtime)
    embedded.rows | "WriteEmbeddings" >> WriteEmbeddings(
        o.output, o.output_format, dim=config.facts.dim, columns=output_columns(config),
        metadata=config.metadata())
    ((read.dead_letters, unique.dead_letters, embedded.dead_letters, *skipped_dead)
     | "AllDeadLetters" >> beam.Flatten()
     | "WriteDeadLetters" >> WriteDeadLetters(config.dead_letter))


def run(config: RunConfig) -> dict:
    """Run to completion; write, log and return the summary."""
    start = time.monotonic()
    pipeline = beam.Pipeline(options=config.options)
    build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    summary = summarize(committed_counters(result), time.monotonic() - start)
    write_summary(summary, f"{config.options.output}-summary.json")
    return summary
