"""Nothing is lost: every record read is embedded, dead-lettered or a counted duplicate."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures import bad_corpus
from tests.pipeline_helpers import read_dead_letters, read_parquet_rows, run_cli


def assert_accounted(summary, out):
    rows = read_parquet_rows(out)
    letters = read_dead_letters(f"{out}-errors")
    assert summary["read"] == (summary["embedded"] + sum(summary["dead_lettered"].values())
                               + summary["duplicates"])
    assert len(rows) == summary["embedded"]
    assert len(letters) == sum(summary["dead_lettered"].values())
    by_reason = {}
    for letter in letters:
        assert letter["reason"] and letter["source"] and "detail" in letter and "raw" in letter
        by_reason[letter["reason"]] = by_reason.get(letter["reason"], 0) + 1
    assert by_reason == summary["dead_lettered"]
    return rows, letters


def test_text_file_with_every_bad_kind(tmp_path):
    corpus = bad_corpus.write_text(str(tmp_path))
    out = str(tmp_path / "out" / "emb")
    summary = run_cli(f"--input={corpus.path}", f"--output={out}")
    rows, letters = assert_accounted(summary, out)
    assert summary["read"] == corpus.read
    assert summary["dead_lettered"] == corpus.dead_letters
    assert summary["duplicates"] == 1 and summary["embedded"] == corpus.documents - 1
    # The 2 MB line is one 2-million-character word: WordPiece makes it a single
    # [UNK], as Hugging Face does; it is embedded, not lost.
    import hashlib
    assert hashlib.sha256(bad_corpus.TWO_MB_LINE.encode()).hexdigest() in rows
    bad = next(l for l in letters if l["reason"] == "invalid_utf8")
    assert bad["source"].endswith("corpus.txt:2") and "\\xff" in bad["raw"]


def test_jsonl_with_malformed_missing_mistyped_and_duplicate_ids(tmp_path):
    corpus = bad_corpus.write_jsonl(str(tmp_path))
    out = str(tmp_path / "emb")
    summary = run_cli(f"--input={corpus.path}", "--text_field=text", f"--output={out}")
    rows, letters = assert_accounted(summary, out)
    expected = dict(corpus.dead_letters, duplicate_id=2)
    assert summary["dead_lettered"] == expected
    assert summary["duplicates"] == 1 and "dup-same" in rows and "dup-conflict" not in rows
    assert {l["id"] for l in letters if l["reason"] == "duplicate_id"} == {"dup-conflict"}


@pytest.mark.parametrize("writer", [bad_corpus.write_csv, bad_corpus.write_parquet])
def test_csv_and_parquet_bad_rows(tmp_path, writer):
    corpus = writer(str(tmp_path))
    out = str(tmp_path / "emb")
    summary = run_cli(f"--input={corpus.path}", "--text_field=text", f"--output={out}")
    assert_accounted(summary, out)
    assert summary["dead_lettered"] == corpus.dead_letters
    assert summary["embedded"] == corpus.documents


def test_console_script_and_module_entry_point(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("one line\nanother line\n", encoding="utf-8")
    for i, command in enumerate(([sys.executable, "-m", "pipeline"],
                                 [os.path.join(os.path.dirname(sys.executable), "beam-embed")])):
        out = str(tmp_path / f"out{i}")
        subprocess.run([*command, f"--input={corpus}", f"--output={out}", "--runner=FnApiRunner"],
                       check=True, capture_output=True, timeout=300)
        assert len(read_parquet_rows(out)) == 2
