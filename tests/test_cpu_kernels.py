"""beam-embed asks TensorFlow for oneDNN's CPU kernels on x86 CPUs with AVX2 and FMA
(models/cpu_kernels.py), before TensorFlow loads, and leaves a user's own choice alone."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models.cpu_kernels import ENV, cpu_flags, onednn_choice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVX2 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})


@pytest.mark.parametrize("environ, machine, flags, loaded, want", [
    ({}, "x86_64", AVX2, False, "1"),
    ({}, "AMD64", AVX2 | {"avx512f", "avx512_bf16"}, False, "1"),
    ({ENV: "0"}, "x86_64", AVX2, False, None),        # the user's choice stands
    ({ENV: "1"}, "x86_64", frozenset(), False, None),
    ({}, "x86_64", AVX2, True, None),                  # too late: TensorFlow read it already
    ({}, "x86_64", AVX2 - {"fma"}, False, None),
    ({}, "x86_64", frozenset({"sse2", "avx"}), False, None),
    ({}, "aarch64", frozenset({"asimd", "sve"}), False, None),
    ({}, "x86_64", frozenset(), False, None),          # no /proc/cpuinfo
])
def test_the_choice(environ, machine, flags, loaded, want):
    assert onednn_choice(environ, machine, flags, loaded) == want


def test_cpu_flags_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx", "avx2", "fma"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert cpu_flags(str(tmp_path / "noflags")) == frozenset()


def _fresh_process(code: str, **env) -> list[str]:
    """What a new Python process prints, words, with TF_ENABLE_ONEDNN_OPTS unset unless given."""
    environ = {k: v for k, v in os.environ.items() if k != ENV}
    environ.update(env, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


ENABLED = "from transforms.encode import onednn_enabled; print(onednn_enabled())"


@pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags() or os.uname().machine != "x86_64",
                    reason="needs an x86 CPU with AVX2 and FMA")
def test_a_worker_importing_the_encoder_runs_onednn():
    # What an SDK worker does when it unpickles the embedding DoFn: imports transforms.
    assert _fresh_process(ENABLED)[-1] == "True"


def test_the_users_choice_is_kept():
    assert _fresh_process(ENABLED, **{ENV: "0"})[-1] == "False"


def test_a_process_that_loaded_tensorflow_first_is_left_alone():
    code = ("import os, tensorflow, models; from transforms.encode import onednn_enabled; "
            f"print(os.environ.get({ENV!r}, 'unset'), onednn_enabled())")
    assert _fresh_process(code)[-2] == "unset"  # not set behind TensorFlow's back, nor for child processes
