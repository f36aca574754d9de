"""Encoding batches of pieces: pack, run the encoder, pool, normalize.

The encoder runs on the GPU when there is one (see ``text_modules``); packing runs
on the CPU with the preprocessor's own ``bert_pack_inputs``, to the batch's padded
length. A batch that fails with ``ResourceExhaustedError`` (out of memory) is split
in halves and retried, down to single pieces; a piece that still fails, or hits any
other TensorFlow error, comes back as an error instead of killing the job.

The model is one per SDK process, or ``model_copies`` copies per machine shared by all
its SDK processes through Beam's own mechanism (``share_model_across_processes``:
RunInference loads each copy once per machine, in whichever SDK process gets there
first, and every process calls it through a ``multi_process_shared`` proxy). Only
token ids go to a shared copy and only vectors come back: tokenizing, splitting on
out-of-memory, counters and dead letters stay in the calling process, so they
behave the same both ways (see ``ServedEncoder`` for how errors cross).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import gc
import itertools
import logging
import os
import pickle
import threading
import uuid
from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler

from models.cpu_kernels import cpu_flags
from transforms import counters
from transforms.batching import ATTENTION_LENGTH, BatchShape, is_filler
from transforms.constants import (DEFAULT_POOLING, DEFAULT_PRECISION, MAX_MODEL_COPIES,
                                  MAX_SEQ_LENGTH, MODEL_COPIES_AUTO, PRECISIONS)
from transforms.progress import PROGRESS
from transforms.shared_transport import enable_no_delay
from transforms.pooling import l2_normalize, pool
from transforms.placement import claim_slot, device_for_slot, gpu_count, process_slot
from transforms.text_modules import encoder_device, load_encoder, load_module
from transforms.tf_errors import error_text
from transforms.records import Encoded, Piece

NON_FINITE = "the encoder gave a NaN or infinite embedding"
_INPUT = tf.TensorSpec([None, None], tf.int32)
_VALUES = tf.TensorSpec([None], tf.int32)
_ROW_LENGTHS = tf.TensorSpec([None], tf.int64)
_SEQ_LENGTH = tf.TensorSpec([], tf.int32)
# Kept in float32 under --precision bfloat16 on the CPU (see _enable_mixed_precision).
_FLOAT32_ELEMENTWISE_OPS = ("Erf", "Erfc", "Mul", "Add", "AddV2", "Sub", "RealDiv", "Square",
                            "SquaredDifference", "Sqrt", "Rsqrt", "Mean", "Sum")


@dataclasses.dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding means; recorded in the output metadata and fingerprint."""
    pooling: str = DEFAULT_POOLING
    layer: Optional[int] = None
    normalize: bool = False
    max_seq_length: int = MAX_SEQ_LENGTH


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How it is computed; does not change the meaning of an embedding."""
    precision: str = DEFAULT_PRECISION
    jit_compile: bool = False


BFLOAT16_CPU_FLAGS = ("avx512f", "avx_ne_convert")
NO_BFLOAT16_CPU = ("--precision bfloat16: this CPU has neither AVX-512 nor AVX-NE-CONVERT, "
                   "which TensorFlow's oneDNN bfloat16 rewrite needs; embedding in float32")


@functools.lru_cache(maxsize=1)
def cpu_runs_bfloat16() -> bool:
    """Whether grappler's oneDNN bfloat16 rewrite applies on this CPU. TensorFlow
    (IsBF16SupportedByOneDNNOnThisCPU) requires AVX-512 or AVX-NE-CONVERT and otherwise
    skips the rewrite without a word, so the run would silently stay float32. Read
    from /proc/cpuinfo; where there is none, assume it does."""
    flags = cpu_flags()
    return not flags or any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def _enable_mixed_precision(precision: str, on_gpu: bool) -> str:
    """Grappler's automatic mixed precision rewrites the restored float32 graph:
    float16 on GPUs, bfloat16 through oneDNN on CPUs (AVX512-BF16/AMX). Returns the
    precision the encoder then runs in: float32 where the CPU cannot do bfloat16."""
    if precision == "float32":
        return precision
    option = "auto_mixed_precision" if on_gpu else "auto_mixed_precision_onednn_bfloat16"
    if precision == "float16" and not on_gpu:
        logging.warning("--precision float16 needs a GPU; using bfloat16 on the CPU")
    if not on_gpu and not cpu_runs_bfloat16():
        logging.warning(NO_BFLOAT16_CPU)
        return "float32"
    if not on_gpu:
        # The oneDNN rewrite also moves element-wise ops (GELU's Erfc, the adds and
        # multiplies, LayerNorm's) to bfloat16, where they run in Eigen, converting
        # per element: Erfc took 3.7x longer than in float32, and the whole encoder
        # was no faster (1.04x on MiniLM). Kept in float32 they leave bfloat16 to the
        # matrix multiplies oneDNN runs natively: 1.27x, and closer to float32.
        os.environ.setdefault("TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_INFERLIST_REMOVE",
                              ",".join(_FLOAT32_ELEMENTWISE_OPS))
    tf.config.optimizer.set_experimental_options({option: True})
    return precision


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN's CPU kernels: by default on
    CPUs with AVX-512, or as TF_ENABLE_ONEDNN_OPTS says. TensorFlow has no public
    call for it; its own port check is what the rewrite passes consult."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


class EncoderEntryPoint:
    """One entry point of a loaded encoder module, holding the module too: a restored
    function alone does not keep the module's variables alive, and TensorFlow frees
    them once the module is collected (the bench's ceiling once failed so)."""

    def __init__(self, module, function, name: str):
        self.module = module
        self.function = function
        self.name = name  # "onednn_call" or "__call__"

    def __call__(self, inputs):
        return self.function(inputs)


def encoder_call(encoder, precision: str, device: str) -> EncoderEntryPoint:
    """What to call the encoder through: its ``onednn_call`` (modules this project
    converted, revision 4 on; models/encoder.py) where oneDNN runs the float32 graph
    on the CPU, as its LayerNorms then fuse into one kernel each; its TF Hub
    ``__call__`` otherwise: on a GPU, in mixed precision, without oneDNN (where that
    spelling is slower) and for modules from other exporters."""
    fused = getattr(encoder, "onednn_call", None)
    if (fused is not None and precision == "float32" and not device.startswith("/GPU")
            and onednn_enabled()):
        return EncoderEntryPoint(encoder, fused, "onednn_call")
    return EncoderEntryPoint(encoder, encoder, "__call__")


# A batch of at least this many padded tokens takes one of the encoder's large-batch
# slots (TextEncoder.embed); smaller ones run beside them.
LARGE_BATCH_TOKENS = 2048


def takes_a_slot(rows: int, length: int) -> bool:
    """Whether a batch of ``rows`` pieces packed to ``length`` takes a large-batch slot:
    LARGE_BATCH_TOKENS padded tokens or more, or attention scores (``rows x length^2``)
    as large as such a batch's at ATTENTION_LENGTH. The long classes' full batches
    hold few tokens on a CPU (2 x 512 at 4,096 tokens: transforms/batching.py) but
    as much attention as any full batch."""
    return (rows * length >= LARGE_BATCH_TOKENS
            or rows * length * length >= LARGE_BATCH_TOKENS * ATTENTION_LENGTH)


def large_batch_slots(device: str) -> int:
    """How many large batches an encoder on ``device`` computes at once (TextEncoder)."""
    return 1 if device.startswith("/GPU") else 2


class TextEncoder:
    """The loaded preprocessor (for packing) and encoder, with pooling fused in.

    Packing and encoding run as one graph call per batch, traced once for one and
    once for two segments with dynamic shapes. Calling the restored
    ``bert_pack_inputs`` eagerly instead costs ~80 ms for every new batch shape
    (TF builds a new call wrapper per input shape), a third of the encoder's own
    time on short texts.

    One TextEncoder serves all of a process's threads (text_encoder caches it): two
    local workers, or an SDK process's harness threads on Dataflow, each with a
    bundle. Activations grow with the batches computing at once, so large batches
    (LARGE_BATCH_TOKENS padded tokens or more, or long pieces' batches with as much
    attention: takes_a_slot) take a slot: two on a CPU, one on a GPU. Two on a
    CPU because two calls keep both cores of this machine busy where one leaves
    them idle part of the time (one thread for the small products,
    softmax, packing): the first 130 batches of bench's 10x MiniLM corpus from two
    threads took 95.5-99.0 s with two slots, 103.0-106.1 s with one and 103.8 s
    from one thread (2-core AMD EPYC, AVX-512), for 80-160 MiB more peak RSS. One
    on a GPU, which computes one batch at a time anyway and whose memory is the
    scarce part. Small batches never wait: they are the ones whose products run on
    one thread.
    """

    def __init__(self, preprocessor, encoder, spec: EmbeddingSpec, runtime: RuntimeOptions, device: str):
        self._preprocessor = preprocessor
        self.device = device
        self._spec = spec
        self._shape = BatchShape(max_seq_length=spec.max_seq_length, bucketed=runtime.jit_compile)
        # A float32 fallback runs what a float32 run does, to the bit.
        precision = _enable_mixed_precision(runtime.precision, device.startswith("/GPU"))
        call = encoder_call(encoder, precision, device)

        # Pure TF ops, no Python control flow on tensors: autograph would only add tracing time.
        @tf.function(input_signature=[_INPUT, _INPUT, _INPUT], jit_compile=runtime.jit_compile,
                     autograph=False)
        def encode(word_ids, mask, type_ids):
            with tf.device(device):
                outputs = call({"input_word_ids": word_ids, "input_mask": mask,
                                   "input_type_ids": type_ids})
                vectors = tf.cast(pool(outputs, mask, spec.pooling, spec.layer), tf.float32)
                return l2_normalize(vectors) if spec.normalize else vectors

        self._encode = encode
        self._pack_and_encode = {n: self._fused(n) for n in (1, 2)}
        self._large_batches = threading.BoundedSemaphore(large_batch_slots(device))

    def _fused(self, num_segments: int):
        signature = [_VALUES, _ROW_LENGTHS] * num_segments + [_SEQ_LENGTH]

        @tf.function(input_signature=signature, autograph=False)
        def pack_and_encode(*args):
            segments = [tf.RaggedTensor.from_row_lengths(args[2 * i], args[2 * i + 1])
                        for i in range(num_segments)]
            inputs = self._preprocessor.bert_pack_inputs(segments, seq_length=args[-1])
            return self._encode(inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"])
        return pack_and_encode

    @staticmethod
    def _segment_arrays(pieces: Sequence[Piece]) -> list[np.ndarray]:
        arrays = []
        for i in range(len(pieces[0].segments)):
            lengths = [len(p.segments[i]) for p in pieces]
            arrays.append(np.fromiter(itertools.chain.from_iterable(p.segments[i] for p in pieces),
                                      dtype=np.int32, count=sum(lengths)))
            arrays.append(np.asarray(lengths, np.int64))
        return arrays

    def embed(self, pieces: Sequence[Piece], seq_length: Optional[int] = None) -> np.ndarray:
        """Vectors of ``pieces``, packed to their length class (or to ``seq_length``)."""
        arrays = self._segment_arrays(pieces)
        seq_length = np.int32(seq_length or self.padded_length(pieces))
        large = takes_a_slot(len(pieces), int(seq_length))
        with self._large_batches if large else contextlib.nullcontext():
            return self._pack_and_encode[len(arrays) // 2](*arrays, seq_length).numpy()

    def padded_length(self, pieces: Sequence[Piece]) -> int:
        return self._shape.batch_length(pieces)


@functools.lru_cache(maxsize=8)
def text_encoder(preprocessor_handle: str, encoder_handle: str, spec: EmbeddingSpec,
                 runtime: RuntimeOptions, encoder_class: type[TextEncoder] = TextEncoder,
                 device: Optional[str] = None) -> TextEncoder:
    """One TextEncoder per process, configuration and device. Its graphs are traced and
    optimized on their first call (about 0.35 s for MiniLM); cached, that happens once
    per process, and on the local runner the launcher's probe (``EmbedText.probe``)
    has already done it for the workers."""
    device = device or encoder_device()
    return encoder_class(load_module(preprocessor_handle), load_encoder(encoder_handle, device),
                         spec, runtime, device)


class ServedEncoder:
    """A TextEncoder as a shared copy serves it to the SDK processes' proxies.

    A call's exception travels back pickled. TensorFlow's errors pickle with their
    node definition and operation, which a graph error's are not always (an op
    object); multiprocessing would then send an opaque ``RemoteError`` with a
    traceback as text, and the caller could no longer tell an out-of-memory, which it
    splits, from anything else. So a TensorFlow error is re-raised here as a fresh
    error of the same class with the same message, and any other exception that
    does not pickle as a RuntimeError naming its type.
    """

    def __init__(self, encoder: TextEncoder):
        self._encoder = encoder

    def embed(self, pieces: Sequence[Piece], seq_length: Optional[int] = None) -> np.ndarray:
        try:
            if seq_length is None:  # as the handler calls a model of its own
                return self._encoder.embed(pieces)
            return self._encoder.embed(pieces, seq_length)
        except tf.errors.OpError as e:
            raise portable_error(e) from None
        except Exception as e:  # noqa: BLE001 - re-raised, in a form that crosses
            try:
                pickle.dumps(e)
            except Exception:  # noqa: BLE001
                raise RuntimeError(f"{type(e).__name__}: {e}") from None
            raise


def portable_error(error: tf.errors.OpError) -> tf.errors.OpError:
    """``error``'s class and message without its node and op, so that it pickles."""
    try:
        return type(error)(None, None, error.message)
    except TypeError:  # OpError itself also takes the error code
        return tf.errors.OpError(None, None, error.message, error.error_code)


def wire_pieces(pieces: Sequence[Piece]) -> list[Piece]:
    """What a shared copy needs of each piece: token ids and length, not the ids,
    sources or texts."""
    return [p._replace(doc_id="", source="", text=None, text_pair=None, raw="") for p in pieces]


def parse_model_copies(value) -> int | str:
    """``auto`` or a whole number of copies, 0 or more; ValueError otherwise."""
    if value in (None, MODEL_COPIES_AUTO):
        return MODEL_COPIES_AUTO
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_MODEL_COPIES:
        raise ValueError(f"--model_copies {value!r}: expected {MODEL_COPIES_AUTO}, 0 (one model "
                         f"per SDK process) or a number of shared copies per machine, at most "
                         f"{MAX_MODEL_COPIES}")
    return int(text)


enable_no_delay()  # for the proxies of shared copies (transforms/shared_transport.py)


@functools.lru_cache(maxsize=None)
def resolved_copies(model_copies) -> int:
    """Shared copies per machine (0: one model per SDK process) for ``--model_copies``,
    worked out where the model runs: ``auto`` means one per GPU this process sees, so
    a launcher without a GPU does not decide for GPU workers."""
    if model_copies in (None, MODEL_COPIES_AUTO):
        return gpu_count()
    return int(model_copies)


@functools.cache
def _unfreeze_at_exit():
    atexit.register(gc.unfreeze)


class EncoderModelHandler(ModelHandler[Sequence[Piece], Encoded, TextEncoder]):
    """RunInference handler for pre-formed batches (use ``.with_no_batching()``).

    ``encoder_class`` is what each worker instantiates around the loaded modules: a
    TextEncoder subclass can wrap ``embed``, which is how the tests make the real
    modules run out of memory above a batch size.
    """

    def __init__(self, preprocessor_handle: str, encoder_handle: str, spec: EmbeddingSpec,
                 runtime: RuntimeOptions = RuntimeOptions(),
                 encoder_class: type[TextEncoder] = TextEncoder,
                 model_copies: int | str = MODEL_COPIES_AUTO):
        super().__init__()
        self._handles = (preprocessor_handle, encoder_handle)
        self._spec = spec
        self._runtime = runtime
        self._encoder_class = encoder_class
        self._copies_option = model_copies
        self._shape = BatchShape(max_seq_length=spec.max_seq_length, bucketed=runtime.jit_compile)
        # Names this job's device slots on each machine (transforms/placement.py);
        # pickled with the handler, so all SDK processes of the job share it.
        self._job_key = uuid.uuid4().hex

    def share_model_across_processes(self) -> bool:
        return resolved_copies(self._copies_option) > 0

    def model_copies(self) -> int:
        return max(resolved_copies(self._copies_option), 1)

    def local_model(self) -> TextEncoder:
        """This process's own model (the launcher's probe uses it)."""
        return self._text_encoder(device_for_slot(process_slot(self._job_key)))

    def _text_encoder(self, device: str) -> TextEncoder:
        return text_encoder(*self._handles, self._spec, self._runtime, self._encoder_class, device)

    def load_model(self) -> TextEncoder | ServedEncoder:
        """Per process: this process's model. Shared: one copy, on the device of the
        next slot of this job on this machine, as the proxies will call it."""
        if self.share_model_across_processes():
            model = ServedEncoder(self._text_encoder(device_for_slot(claim_slot(self._job_key))))
        else:
            model = self.local_model()
        # The restored modules, TF and Beam are hundreds of thousands of long-lived
        # objects; every full collection walks them again (about 2% of a local run's
        # time). Freezing moves what exists now out of the collector's sight; at exit
        # they are unfrozen so that extension types are still finalized (frozen, some
        # report themselves leaked: nanobind's, e.g. duckdb's).
        gc.freeze()
        _unfreeze_at_exit()
        return model

    def get_num_bytes(self, batch) -> int:
        return 4 * sum(p.n_tokens for p in batch)

    def get_metrics_namespace(self) -> str:
        return "beam_embed_encode"

    def run_inference(self, batch: Sequence[Piece], model: TextEncoder, inference_args=None):
        return self._embed_or_split(list(batch), model)

    def _embed_or_split(self, pieces: list[Piece], model) -> list[Encoded]:
        shared = not isinstance(model, TextEncoder)  # a proxy of a ServedEncoder
        try:
            vectors = model.embed(wire_pieces(pieces) if shared else pieces)
        except tf.errors.ResourceExhaustedError as e:
            if len(pieces) == 1:
                return [Encoded(pieces[0], None, f"out of memory even alone: {error_text(e)}")]
            counters.counter(counters.OOM_SPLITS).inc()
            logging.warning("out of memory on a batch of %d pieces (%d tokens); splitting it",
                            len(pieces), sum(p.n_tokens for p in pieces))
            return self._halves(pieces, model)
        except tf.errors.OpError as e:
            if len(pieces) == 1:
                return [Encoded(pieces[0], None, error_text(e))]
            return self._halves(pieces, model)
        # Fillers (quantized runs' partial batches, fill_to_shape) are computed, not
        # embedded: they count in TOKENS_COMPUTED only.
        real = [p for p in pieces if not is_filler(p)]
        tokens = sum(p.n_tokens for p in real)
        PROGRESS.add(len(real), tokens)
        counters.counter(counters.TOKENS).inc(tokens)
        counters.counter(counters.TOKENS_COMPUTED).inc(
            len(pieces) * self._shape.batch_length(pieces))
        # A NaN or infinite vector (float16 overflowing, say) is no embedding: written as
        # a row it would pass for one. It is an error of that piece alone.
        finite = np.isfinite(vectors).all(axis=1)
        return [Encoded(p, v, None) if ok else Encoded(p, None, NON_FINITE)
                for p, v, ok in zip(pieces, vectors, finite)]

    def _halves(self, pieces, model):
        half = len(pieces) // 2
        return self._embed_or_split(pieces[:half], model) + self._embed_or_split(pieces[half:], model)
