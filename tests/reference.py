"""Calling reference/hf_reference.py (Hugging Face, torch) from the tests.

The reference side runs in its own venv (.venv-ref: torch, transformers,
sentence-transformers, no TensorFlow), so every call is a subprocess that reads
its inputs from files and writes its results to a file. Expected values in the
tests come from here, never from beam-embed's own code.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "reference", "hf_reference.py")


def ref_python_path() -> str:
    return os.environ.get("BEAM_EMBED_REF_PYTHON") or os.path.join(REPO, ".venv-ref", "bin", "python")


def _argv(subcommand: str, kwargs: dict) -> list[str]:
    argv = [ref_python_path(), SCRIPT, subcommand]
    for key, value in kwargs.items():
        argv.append("--" + key.replace("_", "-"))
        argv.extend(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return argv


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    return env


def start_reference(subcommand: str, **kwargs) -> subprocess.Popen:
    """Start ``hf_reference.py SUBCOMMAND --key value ...`` (underscores become dashes,
    lists become several values); finish it with ``wait_reference``."""
    return subprocess.Popen(_argv(subcommand, kwargs), env=_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_reference(process: subprocess.Popen) -> None:
    out, err = process.communicate()
    if process.returncode:
        raise RuntimeError(f"reference command failed ({process.returncode}): "
                           f"{' '.join(process.args)}\n{out}\n{err[-4000:]}")


def run_reference(subcommand: str, **kwargs) -> None:
    wait_reference(start_reference(subcommand, **kwargs))


def hf_tokenize(family: str, tokenizer_dir: str, texts: list[str], seq_lengths=(16, 128)) -> dict:
    """Hugging Face's ids: ``tokens`` (no specials), ``packed[n]`` (singles) and
    ``packed_pairs[n]`` (text i with text -1-i, truncation="longest_first")."""
    with tempfile.TemporaryDirectory(prefix="beam-embed-ref-") as work:
        texts_path, out_path = os.path.join(work, "texts.json"), os.path.join(work, "ids.json")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
        run_reference("tokenize", family=family, tokenizer_dir=tokenizer_dir, texts=texts_path,
                      out=out_path, seq_length=list(seq_lengths))
        with open(out_path, encoding="utf-8") as f:
            result = json.load(f)
    for key in ("packed", "packed_pairs"):
        result[key] = {int(n): v for n, v in result[key].items()}
    return result


def hf_encode(checkpoint_dir: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF AutoModel outputs: sequence_output, pooled_output, encoder_outputs [layers, ...]."""
    with tempfile.TemporaryDirectory(prefix="beam-embed-ref-") as work:
        in_path, out_path = os.path.join(work, "in.npz"), os.path.join(work, "out.npz")
        np.savez(in_path, **{k: np.asarray(v, np.int64) for k, v in inputs.items()})
        run_reference("encode", checkpoint=checkpoint_dir, inputs=in_path, out=out_path)
        with np.load(out_path) as out:
            return {k: out[k] for k in out.files}


def sentence_embeddings(model_dir: str, texts: list[str]) -> np.ndarray:
    """sentence-transformers' ``encode`` on a local model folder."""
    with tempfile.TemporaryDirectory(prefix="beam-embed-ref-") as work:
        texts_path, out_path = os.path.join(work, "texts.json"), os.path.join(work, "emb.npy")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
        run_reference("sentence-embed", model_dir=model_dir, texts=texts_path, out=out_path)
        return np.load(out_path)


COMPACT_SCRIPT = os.path.join(REPO, "reference", "st_compact.py")


def _run_compact(*argv: str) -> None:
    process = subprocess.run([ref_python_path(), COMPACT_SCRIPT, *argv], env=_env(), cwd=REPO,
                             capture_output=True, text=True)
    if process.returncode:
        raise RuntimeError(f"reference command failed ({process.returncode}): {argv}\n"
                           f"{process.stdout}\n{process.stderr[-4000:]}")


def st_quantize(vectors: np.ndarray, ranges=None, calibration=None) -> dict[str, np.ndarray]:
    """sentence-transformers' ``quantize_embeddings`` on ``vectors``: binary, ubinary,
    and with ``ranges`` int8/uint8, with ``calibration`` int8/uint8_calibrated."""
    with tempfile.TemporaryDirectory(prefix="beam-embed-ref-") as work:
        in_path, out_path = os.path.join(work, "in.npz"), os.path.join(work, "out.npz")
        arrays = {"vectors": np.asarray(vectors, np.float32)}
        if ranges is not None:
            arrays["ranges"] = np.asarray(ranges, np.float32)
        if calibration is not None:
            arrays["calibration"] = np.asarray(calibration, np.float32)
        np.savez(in_path, **arrays)
        _run_compact("quantize", "--inputs", in_path, "--out", out_path)
        with np.load(out_path) as out:
            return {k: out[k] for k in out.files}


def st_encode_truncated(model_dir: str, texts: list[str], truncate_dim: int,
                        prompt: str | None = None) -> np.ndarray:
    """``encode(texts, truncate_dim=..., normalize_embeddings=True, prompt=...)``."""
    with tempfile.TemporaryDirectory(prefix="beam-embed-ref-") as work:
        texts_path, out_path = os.path.join(work, "texts.json"), os.path.join(work, "emb.npy")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
        argv = ["encode", "--model-dir", model_dir, "--texts", texts_path,
                "--truncate-dim", str(truncate_dim), "--out", out_path]
        if prompt is not None:
            argv += ["--prompt", prompt]
        _run_compact(*argv)
        return np.load(out_path)
