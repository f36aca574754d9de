"""Incremental runs: ``--skip_existing`` embeds only what no earlier output holds with the
same model fingerprint. The daily recipe: dated prefixes, one glob over all of them."""
from __future__ import annotations

import random

import pyarrow.parquet as pq

from tests.pipeline_helpers import (module_args, read_parquet_rows, run_cli, shard_files,
                                    text_id, write_lines_corpus)

N_OLD, N_NEW = 300, 30


def assert_accounted(summary):
    assert summary["read"] == (summary["embedded"] + sum(summary["dead_lettered"].values())
                               + summary["duplicates"] + summary["skipped_existing"])


def fingerprint(prefix):
    [path, *_] = shard_files(prefix, "parquet")
    return pq.read_schema(path).metadata[b"beam_embed.fingerprint"].decode()


def test_daily_reruns_embed_only_new_documents(tmp_path, tiny_random_model):
    lines = write_lines_corpus(tmp_path / "all.txt", N_OLD + N_NEW)
    old, new = lines[:N_OLD], lines[N_OLD:]
    day1, day2 = tmp_path / "day1.txt", tmp_path / "day2.txt"
    day1.write_text("\n".join(old) + "\n", encoding="utf-8")
    # The grown corpus, in another order, with a blank line (a dead letter) and a copy.
    grown = old + new
    random.Random(1).shuffle(grown)
    day2.write_text("\n".join(grown + ["", old[0]]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    skip = f"--skip_existing={out}/*/emb-*.parquet"
    model = module_args(tiny_random_model)

    first = run_cli(f"--input={day1}", f"--output={out}/2024-05-01/emb", skip, *model)
    assert first["embedded"] == N_OLD and first["skipped_existing"] == 0  # glob matched nothing

    second = run_cli(f"--input={day2}", f"--output={out}/2024-05-02/emb", skip, *model)
    assert second["embedded"] == N_NEW and second["skipped_existing"] == N_OLD
    assert second["dead_lettered"] == {"empty_text": 1} and second["duplicates"] == 1
    assert_accounted(second)
    day1_rows = read_parquet_rows(f"{out}/2024-05-01/emb")
    day2_rows = read_parquet_rows(f"{out}/2024-05-02/emb")
    assert set(day2_rows) == {text_id(line) for line in new}
    assert not set(day1_rows) & set(day2_rows)
    assert set(day1_rows) | set(day2_rows) == {text_id(line) for line in lines}
    assert fingerprint(f"{out}/2024-05-01/emb") == fingerprint(f"{out}/2024-05-02/emb")

    # The same command again: its own output is replaced, not taken as done.
    again = run_cli(f"--input={day2}", f"--output={out}/2024-05-02/emb", skip, *model)
    assert again["embedded"] == N_NEW and again["skipped_existing"] == N_OLD
    assert set(read_parquet_rows(f"{out}/2024-05-02/emb")) == set(day2_rows)

    # Another pooling is another fingerprint: nothing earlier counts as done.
    cls = run_cli(f"--input={day2}", f"--output={out}/2024-05-03/emb", skip, "--pooling=cls",
                  *model)
    assert cls["embedded"] == N_OLD + N_NEW and cls["skipped_existing"] == 0
    assert_accounted(cls)
    assert fingerprint(f"{out}/2024-05-03/emb") != fingerprint(f"{out}/2024-05-01/emb")


def test_glob_covering_its_own_prefix_rewrites_the_whole_output(tmp_path, tiny_random_model):
    """``--output out/emb --skip_existing 'out/emb-*.parquet'`` re-run: not an empty output."""
    lines = write_lines_corpus(tmp_path / "c.txt", 40)
    args = [f"--input={tmp_path / 'c.txt'}", f"--output={tmp_path}/out/emb",
            f"--skip_existing={tmp_path}/out/emb-*.parquet", *module_args(tiny_random_model)]
    assert run_cli(*args)["embedded"] == 40
    summary = run_cli(*args)
    assert summary["embedded"] == 40 and summary["skipped_existing"] == 0
    assert set(read_parquet_rows(f"{tmp_path}/out/emb")) == {text_id(line) for line in lines}


def test_bare_relative_globs_in_the_working_directory(tmp_path, tiny_random_model, monkeypatch):
    """``--input '*.txt' --skip_existing 'emb-*.parquet'`` from the data's directory
    (Beam's local glob alone matches nothing for a pattern without a directory)."""
    monkeypatch.chdir(tmp_path)
    lines = write_lines_corpus(tmp_path / "corpus.txt", 40)
    model = module_args(tiny_random_model)
    first = run_cli("--input=*.txt", "--output=out/emb-1", *model)
    assert first["embedded"] == 40
    (tmp_path / "more.txt").write_text("\n".join(lines[:5] + ["a new line", "another new line"]) + "\n",
                                       encoding="utf-8")
    monkeypatch.chdir(tmp_path / "out")
    second = run_cli("--input=../more.txt", "--output=emb-2", "--skip_existing=emb-*.parquet", *model)
    assert second["skipped_existing"] == 5 and second["embedded"] == 2
