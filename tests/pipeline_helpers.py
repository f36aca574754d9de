"""Running the real CLI in tests and reading its outputs back independently."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

from pipeline.main import main


def run_cli(*args: str) -> dict:
    """``beam-embed ARGS --runner=FnApiRunner``; returns the summary it wrote."""
    argv = [*args]
    if not any(a.startswith("--runner") for a in argv):
        argv.append("--runner=FnApiRunner")
    assert main(argv) == 0
    output = next(a.split("=", 1)[1] for a in argv if a.startswith("--output="))
    with open(f"{output}-summary.json") as f:
        return json.load(f)


def shard_files(prefix: str, extension: str) -> list[str]:
    """PREFIX-SSSSS-of-NNNNN.ext only: not another prefix's files, such as PREFIX-v2-..."""
    pattern = re.compile(rf"{re.escape(prefix)}-\d{{5}}-of-\d{{5}}\.{extension}")
    return sorted(p for p in glob.glob(f"{prefix}-*-of-*.{extension}") if pattern.fullmatch(p))


def read_parquet_rows(prefix: str) -> dict[str, dict]:
    files = shard_files(prefix, "parquet")
    assert files, f"no parquet shards at {prefix}"
    rows = {}
    for path in files:
        for row in pq.read_table(path).to_pylist():
            assert row["id"] not in rows, f"duplicate id {row['id']}"
            row["embedding"] = np.asarray(row["embedding"], np.float32)
            rows[row["id"]] = row
    return rows


def read_dead_letters(prefix: str) -> list[dict]:
    letters = []
    for path in shard_files(prefix, "jsonl"):
        with open(path, encoding="utf-8") as f:
            letters.extend(json.loads(line) for line in f if line.strip())
    return letters


class DirectEncoder:
    """The modules called directly, one text at a time, pooled with numpy: the
    independent path the pipeline's rows are checked against."""

    def __init__(self, preprocessor_dir: str, encoder_dir: str):
        import tensorflow as tf
        import tensorflow_hub as hub
        import tensorflow_text  # noqa: F401
        self._tf = tf
        self.preprocessor = hub.load(preprocessor_dir)
        self.encoder = hub.load(encoder_dir)

    def outputs(self, text: str, text_pair: str | None = None, seq_length: int = 512):
        tf = self._tf
        segments = [self.preprocessor.tokenize(tf.constant([text]))]
        if text_pair is not None:
            segments.append(self.preprocessor.tokenize(tf.constant([text_pair])))
        inputs = self.preprocessor.bert_pack_inputs(segments, seq_length=seq_length)
        n = int(tf.reduce_sum(inputs["input_mask"]))
        inputs = {k: v[:, :n] for k, v in inputs.items()}  # drop padding entirely
        return self.encoder(inputs), n

    def embed(self, text, text_pair=None, pooling="mean", layer=None, normalize=False,
              seq_length=512) -> np.ndarray:
        outputs, n = self.outputs(text, text_pair, seq_length)
        if pooling == "pooled_output":
            vector = outputs["pooled_output"].numpy()[0]
        else:
            tokens = (outputs["sequence_output"] if layer is None
                      else outputs["encoder_outputs"][layer]).numpy()[0]
            vector = {"mean": lambda t: t.mean(0), "cls": lambda t: t[0],
                      "max": lambda t: t.max(0)}[pooling](tokens)
        if normalize:
            vector = vector / np.linalg.norm(vector)
        return vector.astype(np.float32)


def module_args(dirs) -> list[str]:
    """``--preprocessor`` and ``--encoder`` for a models.export.ModuleDirs."""
    return [f"--preprocessor={dirs.preprocessor}", f"--encoder={dirs.encoder}"]


def write_lines_corpus(path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct lines of varied length (3 to 60 words); returns them."""
    import random
    rng = random.Random(seed)
    words = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
             "omicron pi rho sigma tau upsilon phi chi psi omega").split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) + f" {i}"
             for i in range(n)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def text_id(line: str) -> str:
    """The id of a plain-text line: the hex SHA-256 of its UTF-8 bytes."""
    import hashlib
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def fails_with(capsys, argv, *fragments) -> str:
    """The CLI refuses ``argv`` (exit 2) with every fragment in its error message."""
    assert main([*argv, "--runner=FnApiRunner"]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    return err


def copy_model(model_root: str, cache: str, model_id: str | None = None) -> str:
    """A ``BEAM_EMBED_CACHE`` holding a converted default model (under ``model_id``), as
    an image bakes it; returns the model's directory."""
    target = os.path.join(cache, "models", model_id or os.path.basename(model_root))
    shutil.copytree(model_root, target)
    return target


def file_tree(root: str) -> list[tuple[str, int]]:
    """(relative path, mtime) of everything under ``root``: equal snapshots, nothing written."""
    return sorted((os.path.relpath(os.path.join(d, name), root), os.stat(os.path.join(d, name)).st_mtime_ns)
                  for d, dirs, files in os.walk(root) for name in dirs + files)


def heavy_modules_loaded_by(modules: str, heavy=("apache_beam", "tensorflow", "pyarrow")) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has in sys.modules after importing
    ``modules`` (comma-separated): light modules such as --help's must load none."""
    probe = (f"import sys, {modules}; "
             f"print(sorted(m for m in {tuple(heavy)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().replace("'", '"'))
