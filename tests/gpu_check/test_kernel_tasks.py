"""The GPU path's task pool, run here with CPU tasks in the interpreter: each (kernel, dtype) in its own
process, results collected as they end, a task that dies reported as a failed case of its kernel."""
from tessera.gpu_check.phases.kernels import run_parallel


def test_tasks_run_in_parallel_processes_and_a_dead_one_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_GPU_CHECK_JOBS", "3")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    done = {}
    run_parallel([("write_kv", "fp32"), ("select_topk", "fp32"), ("no_such_kernel", "fp32")], tmp_path,
                 lambda pair, measures: done.update({pair: measures}), device="cpu", size="tiny")
    assert set(done) == {("write_kv", "fp32"), ("select_topk", "fp32"), ("no_such_kernel", "fp32")}
    assert done[("write_kv", "fp32")] and all(m["passed"] for m in done[("write_kv", "fp32")])
    (dead,) = done[("no_such_kernel", "fp32")]
    assert not dead["passed"] and "died with exit status 2" in dead["detail"]
    assert (tmp_path / "logs" / "kernels" / "no_such_kernel_fp32.log").exists()
