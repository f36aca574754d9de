"""What the tool prints is safe for a terminal, and an interrupt ends it in one line.

File names may hold any character but ``/`` and NUL; ESC, BEL, CR, LF and bidi
overrides in them must reach stderr escaped. SIGINT/SIGTERM exit 130/143 with one
line, no traceback. ``file://`` paths are refused naming the option."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.logs import printable
from tests.pipeline_helpers import fails_with, module_args, write_lines_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVIL = "emb-\x1b[31mred\x07\r\nforged line \u202egnp.\u2066x\x9b"
RAW_BYTES = (b"\x1b", b"\x07", b"\r", "\u202e".encode(), "\u2066".encode(), "\x9b".encode())


def test_printable_escapes_what_a_terminal_acts_on():
    assert printable(EVIL) == "emb-\\x1b[31mred\\x07\\r\\nforged line \\u202egnp.\\u2066x\\x9b"
    assert printable("tab\tand\nline", keep="\n") == "tab\\tand\nline"
    assert printable("caf\u00e9 \u4e2d \U0001f600") == "caf\u00e9 \u4e2d \U0001f600"  # printable stays
    assert printable(os.fsdecode(b"bad-\xff.parquet")) == "bad-\\xff.parquet"


def cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        # -v: Beam's INFO lines say when the pipeline has started.
        [sys.executable, "-m", "pipeline", *args, "--runner=FnApiRunner", "-v"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # Whatever started the tests, the child gets SIGINT's default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def test_file_names_reach_stderr_escaped(tmp_path, tiny_random_model):
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / f"{EVIL}.txt").write_bytes(b"a line\nbad \xff byte\n")
    evidence = tmp_path / "ev"
    evidence.mkdir()
    (evidence / f"{EVIL}.parquet").write_text("not parquet")  # warned about by name
    (evidence / os.fsdecode(b"emb-\xff.parquet")).write_text("not parquet either")
    run = cli(f"--input={corpus}/*.txt", f"--output={tmp_path}/out/emb",
              f"--skip_existing={evidence}/emb-*.parquet", *module_args(tiny_random_model))
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err.decode(errors="replace")[-3000:]
    for raw in RAW_BYTES:
        assert raw not in err and raw not in out, raw
    warnings = [line for line in err.decode().splitlines() if "--skip_existing:" in line]
    assert any(printable(EVIL) in line and "ignored" in line for line in warnings), warnings
    assert any("emb-\\xff.parquet" in line for line in warnings), warnings
    assert not any(line.startswith("forged line") for line in err.decode().splitlines())


def test_the_error_line_is_escaped(capsys, tmp_path, tiny_random_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n")
    err = fails_with(capsys, [f"--input={corpus}", f"--output={tmp_path}/o",
                              f"--preprocessor={tiny_random_model.preprocessor}",
                              f"--encoder={tmp_path}/{EVIL}"], "beam-embed: error: --encoder")
    assert err.count("\n") == 1
    for raw in RAW_BYTES:
        assert raw.decode() not in err


@pytest.mark.parametrize("option", ["--input", "--output", "--skip_existing", "--encoder"])
def test_file_urls_are_refused_naming_the_local_path(capsys, tmp_path, option):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n")
    args = {"--input": str(corpus), "--output": f"{tmp_path}/o"}
    args[option] = f"file://{args.get(option, tmp_path / 'x')}"
    err = fails_with(capsys, [f"{name}={value}" for name, value in args.items()],
                     f"{option} 'file://", "file:// URLs are not supported")
    assert "apache-beam[gcp]" not in err and "local path itself ('/" in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_mid_pipeline_exits_in_one_line(tmp_path, tiny_random_model, signum):
    # Long enough to be mid-run a second after the runner starts on any machine: an
    # AVX-512 machine embeds 6,000 of these in 2 s, and a signal that lands once
    # main() has returned finds Python's default handler (a complete output, exit -2).
    write_lines_corpus(tmp_path / "c.txt", 60000)
    out = f"{tmp_path}/out/emb"
    run = cli(f"--input={tmp_path / 'c.txt'}", f"--output={out}", *module_args(tiny_random_model))
    err = b""
    os.set_blocking(run.stderr.fileno(), False)
    deadline = time.monotonic() + 300
    while b"Creating state cache" not in err:  # the runner has started the pipeline
        assert run.poll() is None and time.monotonic() < deadline, err[-3000:]
        time.sleep(0.2)
        err += run.stderr.read() or b""
    time.sleep(1)
    before = len(err)
    run.send_signal(signum)
    os.set_blocking(run.stderr.fileno(), True)
    _, rest = run.communicate(timeout=120)
    after = (err + rest)[before:].decode(errors="replace")
    assert run.returncode == 128 + signum, after[-3000:]
    assert "Traceback" not in after, after[-3000:]
    lines = [line for line in after.splitlines() if line.strip()]
    assert lines[-1] == (f"beam-embed: interrupted by {signal.Signals(signum).name}; a prefix "
                         "without its -summary.json holds no complete output")
    # Only what was logged before the signal landed: no error, no traceback of a bundle.
    assert not [line for line in lines[:-1] if "ERROR" in line or "Error" in line], after
    assert not os.path.exists(f"{out}-summary.json")
