"""Will the encoders of one Dataflow GPU worker fit its GPUs? Checked at launch.

Dataflow starts one SDK process per vCPU. With ``--model_copies 0`` each loads its own
encoder; otherwise the machine holds ``--model_copies`` shared copies (``auto``: one per
GPU), spread round-robin over the GPUs (transforms/placement.py). Each model on a GPU
costs its weights (read from the SavedModel's variables at launch); every SDK process
also holds a CUDA context on every GPU it sees, shared copy or not (TensorFlow
initialises all visible GPUs when it first runs an op, and the tokenizer runs ops).
A context's size cannot be measured on this machine (it has no GPU):
``CUDA_CONTEXT_BYTES`` is an assumption, on the low side, so that only a plan that
cannot fit is refused. Activations come on top and are not counted: an encoder
on a GPU computes one large batch at a time however many threads share it
(transforms/encode.py), and the OOM split-and-retry handles batches too big for
what is left.

The GPU comes from ``worker_accelerator=type:...;count:N`` in
``--dataflow_service_options`` (or ``--experiments``), the vCPUs from
``--machine_type``; an unknown GPU type or machine type is not checked.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple, Optional

GB = 10 ** 9  # decimal, as GPU memory is sold and as the README's figures are given
CUDA_CONTEXT_BYTES = GB // 2  # per process and GPU: assumed, not measured here

# Memory per GPU, from Google Cloud's GPU table (compute/docs/gpus), in decimal GB: a
# little less than the devices have, so the check errs towards letting a plan run.
GPU_MEMORY_BYTES = {
    "nvidia-tesla-t4": 16 * GB, "nvidia-l4": 24 * GB, "nvidia-tesla-v100": 16 * GB,
    "nvidia-tesla-p100": 16 * GB, "nvidia-tesla-p4": 8 * GB, "nvidia-tesla-a100": 40 * GB,
    "nvidia-a100-80gb": 80 * GB, "nvidia-h100-80gb": 80 * GB, "nvidia-h100-mega-80gb": 80 * GB,
}
_ACCELERATOR = re.compile(r"worker_accelerator=(.*)")
_PREDEFINED = re.compile(r"^[a-z]\d[a-z]?-[a-z]+-(\d+)$")   # n1-standard-8, g2-standard-24 ...
_A2 = re.compile(r"^a2-(?:highgpu|megagpu|ultragpu)-(\d+)g$")  # 12 vCPUs per GPU


class Accelerator(NamedTuple):
    type: str
    count: int


def accelerator(options: list[str]) -> Optional[Accelerator]:
    """The ``worker_accelerator`` among Dataflow service options or experiments."""
    for option in options:
        match = _ACCELERATOR.match(option.strip())
        if match:
            fields = dict(part.split(":", 1) for part in match.group(1).split(";") if ":" in part)
            if "type" in fields:
                count = fields.get("count", "1")
                return Accelerator(fields["type"], int(count) if count.isdigit() else 1)
    return None


def machine_vcpus(machine_type: Optional[str]) -> Optional[int]:
    if not machine_type:
        return None
    name = machine_type.rsplit("/", 1)[-1]
    if match := _A2.match(name):
        return 12 * int(match.group(1))
    if match := _PREDEFINED.match(name):
        return int(match.group(1))
    return None


def models_per_gpu(model_copies, processes: int, gpus: int) -> tuple[int, str]:
    """(encoders on the fullest GPU, what they are, for the message)."""
    if model_copies == 0:
        return math.ceil(processes / gpus), f"{processes} SDK processes each load the encoder"
    copies = gpus if model_copies == "auto" else model_copies
    return math.ceil(copies / gpus), f"{copies} shared cop{'y' if copies == 1 else 'ies'}"


def plan_problem(weight_bytes: int, model_copies, gpu: Accelerator, vcpus: int,
                 one_process: bool = False) -> Optional[str]:
    """Why the plan cannot fit (one line naming the options), or None."""
    memory = GPU_MEMORY_BYTES.get(gpu.type)
    if memory is None or gpu.count < 1:
        return None
    processes = 1 if one_process else vcpus
    per_gpu, what = models_per_gpu(model_copies, processes, gpu.count)
    needed = per_gpu * weight_bytes + processes * CUDA_CONTEXT_BYTES
    if needed <= memory:
        return None
    fix = ("use --model_copies auto (one copy per GPU, shared by the processes)"
           if model_copies == 0 else "use fewer --model_copies")
    return (f"--model_copies {model_copies} with worker_accelerator type:{gpu.type};count:{gpu.count} "
            f"on {vcpus} vCPUs: {what}, {per_gpu} x {weight_bytes / GB:.2f} GB of weights per GPU "
            f"+ {processes} x {CUDA_CONTEXT_BYTES / GB:.1f} GB CUDA contexts = {needed / GB:.1f} GB > "
            f"{memory / GB:.0f} GB; {fix}")
