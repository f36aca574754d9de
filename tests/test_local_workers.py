"""A local run's default: two FnApiRunner workers in one process (pipeline/local_workers.py)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from apache_beam.options.pipeline_options import DirectOptions

from pipeline.beam_options import EmbedOptions
from pipeline.local_workers import apply_default
from tests.pipeline_helpers import read_parquet_rows, run_cli
from transforms.encode import TextEncoder

BEAMS_DEFAULT = ("in_memory", 1)


def direct(argv: list[str]) -> tuple[bool, str, int]:
    options = EmbedOptions(argv)
    applied = apply_default(options, argv)
    view = options.view_as(DirectOptions)
    return applied, view.direct_running_mode, view.direct_num_workers


@pytest.mark.parametrize("runner", [[], ["--runner=FnApiRunner"], ["--runner", "FnApiRunner"],
                                    ["--runner=DirectRunner"],
                                    ["--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner"]])
def test_a_local_run_gets_two_threaded_workers(runner):
    assert direct(runner) == (True, "multi_threading", 2)


@pytest.mark.parametrize("argv, chosen", [
    (["--direct_num_workers=1"], ("in_memory", 1)),
    (["--direct_num_workers", "1"], ("in_memory", 1)),
    (["--direct_num_workers=3"], ("in_memory", 3)),
    (["--direct_running_mode=in_memory"], ("in_memory", 1)),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], ("multi_processing", 2)),
])
def test_the_users_choice_stands(argv, chosen):
    assert direct(["--runner=FnApiRunner", *argv]) == (False, *chosen)


@pytest.mark.parametrize("runner", ["DataflowRunner", "PortableRunner", "BundleBasedDirectRunner"])
def test_other_runners_are_left_alone(runner):
    assert direct([f"--runner={runner}"]) == (False, *BEAMS_DEFAULT)


def test_two_workers_encode_and_the_rows_equal_one_workers(tmp_path, tiny_random_model, monkeypatch):
    """Both workers call the encoder (threads other than the main one, whose calls
    are the launch's probes); every document is embedded once, and the rows equal
    those of Beam's one bundle at a time within float rounding."""
    corpus = tmp_path / "corpus.txt"
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    corpus.write_text("".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 40)) + f" {i}\n"
                              for i in range(1500)), encoding="utf-8")
    model = [f"--preprocessor={tiny_random_model.preprocessor}", f"--encoder={tiny_random_model.encoder}",
             f"--input={corpus}", "--batch_tokens=512"]
    callers = set()
    embed = TextEncoder.embed

    def recording(self, pieces, seq_length=None):
        callers.add(threading.get_ident())
        return embed(self, pieces, seq_length)
    monkeypatch.setattr(TextEncoder, "embed", recording)
    two = run_cli(*model, f"--output={tmp_path}/two")
    workers = callers - {threading.main_thread().ident}
    monkeypatch.setattr(TextEncoder, "embed", embed)
    one = run_cli(*model, f"--output={tmp_path}/one", "--direct_num_workers=1")
    assert len(workers) >= 2
    assert two["embedded"] == one["embedded"] == 1500
    rows_two, rows_one = read_parquet_rows(f"{tmp_path}/two"), read_parquet_rows(f"{tmp_path}/one")
    assert rows_two.keys() == rows_one.keys()
    ids = sorted(rows_one)
    np.testing.assert_allclose(np.stack([rows_two[i]["embedding"] for i in ids]),
                               np.stack([rows_one[i]["embedding"] for i in ids]), atol=1e-5)
