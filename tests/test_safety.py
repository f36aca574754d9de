"""Safe inputs and outputs: no output where the input glob would read it back, no other
output deleted by Beam's sink, no documents or credentials in the logs, and model
handles only ever read."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from pipeline.main import main
from tests.pipeline_helpers import fails_with, module_args, read_dead_letters, read_parquet_rows, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Distinctive text that appears in every document of the corpus below, good or bad.
MARKER = "Quokka-Marmalade-Zeppelin-7f3a9c"
SECRETS = ("sk-live-0123456789abcdef", "hf_SECRETtoken42")


@pytest.fixture
def corpus_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "c.jsonl").write_text('{"id": "1", "text": "hello"}\n', encoding="utf-8")
    return data


@pytest.mark.parametrize("input_glob,output", [
    ("{d}/c.jsonl", "{d}/c.jsonl"),           # the same path
    ("{d}/*", "{d}/emb"),                     # the shards would match
    ("{d}/**", "{d}/sub/emb"),                # deeper, through **
    ("{d}/*.json*", "{d}/emb"),               # the summary would match
    ("{d}/c.*", "{d}/c"),                     # only the prefix's lock (c.lock) would match
])
def test_output_inside_the_input_glob_is_refused(capsys, corpus_dir, input_glob, output):
    d = str(corpus_dir)
    fails_with(capsys, [f"--input={input_glob.format(d=d)}", "--input_format=jsonl",
                        "--text_field=text", f"--output={output.format(d=d)}"],
               "--output", "lies inside --input")
    assert os.listdir(corpus_dir) == ["c.jsonl"]


@pytest.mark.parametrize("input_glob,output", [
    ("{d}/*", "{t}/link/emb"),                # the output's directory is a link to the input's
    ("{t}/link/*", "{d}/emb"),                # the input's directory is a link to the output's
    ("{d}/*", "{t}/link/sub/../emb"),         # "..": the link is followed first, as the OS does
])
def test_output_inside_the_input_glob_through_a_link_is_refused(capsys, corpus_dir, tmp_path,
                                                                input_glob, output):
    """Paths were compared as written: --output=link/emb with link -> data passed, and the
    run read its own lock files back from data/ as documents (read 54 of 20 lines)."""
    (corpus_dir / "sub").mkdir()
    os.symlink(corpus_dir, tmp_path / "link")
    fails_with(capsys, [f"--input={input_glob.format(d=corpus_dir, t=tmp_path)}",
                        "--input_format=jsonl", "--text_field=text",
                        f"--output={output.format(d=corpus_dir, t=tmp_path)}"],
               "--output", "lies inside --input")
    assert sorted(os.listdir(corpus_dir)) == ["c.jsonl", "sub"]


@pytest.mark.parametrize("target", ["out/emb-summary.json", "out/emb-00000-of-00001.parquet",
                                    "out/emb-errors-00000-of-00001.jsonl",
                                    "out/beam-temp-emb-" + "0" * 32 + "/x.emb.parquet"])
@pytest.mark.parametrize("input_glob", ["{d}/link.txt", "{d}/*.txt"])
def test_an_input_linked_to_a_file_of_the_output_is_refused(capsys, tmp_path, target, input_glob):
    """--input=sum.txt, a link to o/emb-summary.json, with --output=o/emb: the run's
    clearing deleted the earlier complete output, then the run failed reading the
    dangling link (exit 1, a traceback)."""
    data = tmp_path / "data"
    data.mkdir()
    planted = tmp_path / target
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text("earlier output\n")
    os.symlink(planted, data / "link.txt")
    fails_with(capsys, [f"--input={input_glob.format(d=data)}", "--input_format=text",
                        f"--output={tmp_path}/out/emb", "--preprocessor=/nonexistent",
                        "--encoder=/nonexistent"], "lies inside --input")
    assert planted.read_text() == "earlier output\n"


def test_dead_letters_inside_the_input_glob_are_refused(capsys, corpus_dir, tmp_path):
    d = str(corpus_dir)
    # The default dead-letter prefix, OUTPUT-errors, writes .jsonl next to the output.
    fails_with(capsys, [f"--input={d}/*.jsonl", "--text_field=text", f"--output={d}/emb"],
               "--output", "dead letters", "lies inside --input")
    fails_with(capsys, [f"--input={d}/*.jsonl", "--text_field=text",
                        f"--output={tmp_path}/out/emb", f"--dead_letter={d}/errors"],
               "--dead_letter", "lies inside --input")
    # Next to the input but not matched by its glob: fine (the check passes; the run is
    # not needed here, so the model handles are made to fail right after it).
    fails_with(capsys, [f"--input={d}/*.jsonl", "--text_field=text", f"--output={d}/emb.out",
                        f"--dead_letter={tmp_path}/errors", f"--preprocessor={tmp_path}/none",
                        f"--encoder={tmp_path}/none"], "--preprocessor")


def test_a_prefix_that_would_make_beam_delete_another_output_is_refused(capsys, corpus_dir,
                                                                        tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other = out / "emb-v2-00000-of-00001.parquet"  # Beam's sink clears out/emb-*-of-00001.parquet
    other.write_bytes(b"another run's output")
    fails_with(capsys, [f"--input={corpus_dir}/c.jsonl", "--text_field=text",
                        f"--output={out}/emb"], "--output", "emb-v2-00000-of-00001.parquet")
    assert other.read_bytes() == b"another run's output"


def write_marked_corpus(path):
    """Every kind of record, each carrying MARKER: embedded, or dead-lettered for a reason."""
    lines = [
        json.dumps({"id": "good", "text": f"{MARKER} is embedded"}).encode(),
        json.dumps({"id": "dup", "text": f"{MARKER} one"}).encode(),
        json.dumps({"id": "dup", "text": f"{MARKER} two"}).encode(),
        json.dumps({"id": "long", "text": f"{MARKER} " + "word " * 200}).encode(),
        f'{{"id": "bad-utf8", "text": "{MARKER} '.encode() + b'\xff"}',
        f'{{"id": "broken", "text": "{MARKER}'.encode(),
        json.dumps({"id": "typed", "text": [MARKER]}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def check_marked_outputs(out):
    assert set(read_parquet_rows(out)) == {"good"}
    letters = read_dead_letters(f"{out}-errors")
    assert {letter["reason"] for letter in letters} == {
        "duplicate_id", "too_long", "invalid_utf8", "malformed_record", "invalid_type"}
    # The documents did flow: the dead letters, not the logs, are where they are kept.
    assert all(MARKER in letter["raw"] for letter in letters)


def test_logs_hold_no_document_text_and_no_credentials(tmp_path, tiny_random_model, caplog,
                                                       capfd):
    caplog.set_level(logging.INFO)  # what the CLI logs
    write_marked_corpus(tmp_path / "c.jsonl")
    out = str(tmp_path / "out" / "emb")
    args = [f"--input={tmp_path / 'c.jsonl'}", "--text_field=text", f"--output={out}",
            "--long_text=reject", "--max_seq_length=64", *module_args(tiny_random_model),
            "--runner=FnApiRunner"]
    # An unknown credential-like flag is refused, naming the flag, never its value.
    assert main([*args, f"--api_key={SECRETS[0]}", "--hf_token", SECRETS[1]]) == 2
    err = capfd.readouterr().err
    assert "--api_key" in err and "--hf_token" in err
    assert all(secret not in err for secret in SECRETS)
    # A known one (a Beam option whose name looks like a credential) runs, and every
    # log record of the process shows its value as ***, whichever logger writes it.
    run_cli(*args, f"--dataflow_kms_key={SECRETS[0]}")
    logging.getLogger("apache_beam.options").warning("options: --dataflow_kms_key=%s", SECRETS[0])
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "options: --dataflow_kms_key=***" in logged
    for secret in SECRETS:
        assert secret not in logged
    assert MARKER not in logged
    check_marked_outputs(out)


def snapshot(root):
    """Every file and directory under root with its size and modification time."""
    entries = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            stat = os.stat(path)
            entries[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return entries


def test_the_cli_only_reads_the_model_and_logs_no_document(tmp_path, tiny_random_model):
    """A fresh process, so the modules are really loaded from disk (and not from the
    per-process cache of an earlier test)."""
    before = snapshot(tiny_random_model.root)
    write_marked_corpus(tmp_path / "c.jsonl")
    out = str(tmp_path / "out" / "emb")
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", f"--input={tmp_path / 'c.jsonl'}", "--text_field=text",
         f"--output={out}", "--long_text=reject", "--max_seq_length=64",
         *module_args(tiny_random_model), "--runner=FnApiRunner", f"--dataflow_kms_key={SECRETS[0]}",
         "-v"],  # every logger on: nothing of a document or the key reaches any of them
        cwd=REPO, capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    assert snapshot(tiny_random_model.root) == before
    output = run.stdout + run.stderr
    assert MARKER.encode() not in output and SECRETS[0].encode() not in output
    check_marked_outputs(out)
