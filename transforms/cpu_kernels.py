"""TensorFlow's oneDNN CPU kernels, on unless the user says otherwise.

TensorFlow turns oneDNN on by itself only on x86 CPUs with AVX-512's neural-network
extensions; elsewhere (an AVX2 AMD EPYC here, and many cloud machine types) it
runs Eigen's kernels. On that CPU oneDNN made a float32 2048 x 2048 MatMul 1.4x as
fast, the XLM-R-large-shaped encoder block 1.1x (exact GELU fused into its MatMul),
and the old 3-D projection graph 2.2x (measured in issue 18, bench/). oneDNN's
results differ from Eigen's by float rounding only (1e-6 here).

Imported by the ``transforms`` and ``models`` packages, so it runs before any of
their modules imports TensorFlow, in the launcher and in every SDK worker that
unpickles a beam-embed transform. TensorFlow reads the variable once, when it
loads: a process that imported TensorFlow earlier keeps what it had. Set
``TF_ENABLE_ONEDNN_OPTS=0`` to keep Eigen's kernels.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
