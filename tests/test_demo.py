"""The README's demo: the bundled corpus embeds to one row per distinct line, and
its picture (samples/plot.py) is written next to the output."""
from __future__ import annotations

import importlib.util
import os

from tests.pipeline_helpers import read_parquet_rows, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "samples", "corpus.txt")


def _plot_module():
    spec = importlib.util.spec_from_file_location("plot", os.path.join(REPO, "samples", "plot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_corpus_gives_one_row_per_distinct_line_and_a_picture(tmp_path, capsys):
    with open(CORPUS, encoding="utf-8") as f:
        lines = {line.rstrip("\n") for line in f if line.strip()}
    assert len(lines) >= 300
    out = str(tmp_path / "demo" / "embeddings")
    summary = run_cli(f"--input={CORPUS}", f"--output={out}")
    rows = read_parquet_rows(out)
    assert len(rows) == len(lines) == summary["embedded"]
    assert summary["dead_lettered"] == {} and summary["padding_ratio"] > 0.8

    capsys.readouterr()
    path = _plot_module().main(out, CORPUS)
    assert path == f"{out}-pca.png" and path in capsys.readouterr().out
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < os.path.getsize(path) < 1_000_000


def test_the_pictures_languages():
    plot = _plot_module()
    assert [plot.guess_language(t) for t in (
        "The bus was so crowded that I had to stand.", "图书馆新买了一批关于人工智能的书。",
        "すみません、この近くにコンビニはありますか。", "Se me olvidó cargar el móvil y me quedé sin batería.",
        "Hôm nay trời nắng nóng.", "پاکستان نے آخری گیند پر چھکا لگا کر میچ جیت لیا۔",
        "تأخرت الرحلة إلى القاهرة بسبب عاصفة رملية قوية.")] == [
        "English", "Chinese", "Japanese", "Spanish", "Vietnamese", "Urdu", "Arabic"]
    points = plot.pca_2d(__import__("numpy").random.default_rng(0).normal(size=(20, 8)))
    assert points.shape == (20, 2)
