"""The launcher refuses a GPU worker whose encoders cannot fit its GPUs (exit 2, one line)."""
from __future__ import annotations

from pipeline.memory_plan import GB, Accelerator, accelerator, machine_vcpus, plan_problem
from tests.pipeline_helpers import fails_with, module_args

XLMR_LARGE = 559_890_432 * 4  # 560 M float32 parameters
T4 = Accelerator("nvidia-tesla-t4", 1)


def test_options_are_read_as_dataflow_spells_them():
    assert accelerator(["use_runner_v2", "worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver"]) \
        == Accelerator("nvidia-l4", 2)
    assert accelerator(["worker_accelerator=type:nvidia-tesla-t4;install-nvidia-driver"]) == T4
    assert accelerator(["use_runner_v2"]) is None
    assert [machine_vcpus(m) for m in ("n1-standard-8", "g2-standard-24", "n1-highmem-4",
                                       "a2-highgpu-2g", "zones/x/machineTypes/n1-standard-16")] == [8, 24, 4, 24, 16]
    assert machine_vcpus("custom-8-30720") is None and machine_vcpus(None) is None


def test_the_issue_s_case_is_refused_and_the_shared_copy_fits():
    # XLM-R large, a process per vCPU on an n1-standard-8 with one T4: 8 x 2.7 GB > 16 GB.
    problem = plan_problem(XLMR_LARGE, 0, T4, vcpus=8)
    assert problem.startswith("--model_copies 0 with worker_accelerator type:nvidia-tesla-t4;count:1")
    assert "8 SDK processes" in problem and "use --model_copies auto" in problem
    assert "8 x 2.24 GB of weights per GPU + 8 x 0.5 GB CUDA contexts = 21.9 GB > 16 GB" in problem
    assert plan_problem(XLMR_LARGE, "auto", T4, vcpus=8) is None
    assert plan_problem(XLMR_LARGE, 0, T4, vcpus=8, one_process=True) is None
    assert plan_problem(XLMR_LARGE, 0, Accelerator("nvidia-tesla-a100", 1), vcpus=12) is None
    assert plan_problem(XLMR_LARGE, 0, Accelerator("nvidia-tesla-t4", 4), vcpus=8) is None  # 2 per GPU
    # Every process holds a context on every GPU: 16 of them and 4 models per T4 do not fit.
    assert plan_problem(XLMR_LARGE, 0, Accelerator("nvidia-tesla-t4", 4), vcpus=16) is not None
    assert "use fewer --model_copies" in plan_problem(XLMR_LARGE, 8, T4, vcpus=8)
    assert plan_problem(XLMR_LARGE, 0, Accelerator("some-future-gpu", 1), vcpus=8) is None


def test_the_cli_refuses_a_plan_that_cannot_fit(tmp_path, capsys, tiny_random_model):
    """Even a tiny encoder: 96 processes' CUDA contexts alone exceed one T4."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n", encoding="utf-8")
    err = fails_with(capsys, [f"--input={corpus}", f"--output={tmp_path / 'o'}", *module_args(tiny_random_model),
                              "--model_copies=0", "--machine_type=n1-standard-96",
                              "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1"],
                     "--model_copies 0 with worker_accelerator type:nvidia-tesla-t4;count:1 on 96 vCPUs")
    assert len(err.strip().splitlines()) == 1
