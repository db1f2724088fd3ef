"""The GPU case set of the page kernels, run here in the Triton interpreter (the attention kernels' GPU set
takes minutes in the interpreter; the dry run covers their small set): every case passes against the
reference, so a failure on a GPU is the GPU's, not the check's."""
import pytest

from tessera.gpu_check.kernel_tasks import KERNELS, run_task, tasks

CHEAP = ["score_pages", "write_kv", "update_minmax", "copy_blocks", "select_topk"]


@pytest.mark.parametrize("kernel", CHEAP)
def test_full_case_set_passes_in_the_interpreter(kernel):
    for name, dtype in tasks("full"):
        if name == kernel:
            rows = run_task(kernel, dtype, "cpu", "full")
            assert rows and all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]


def test_every_kernel_and_dtype_is_a_task():
    assert {k for k, _ in tasks("full")} == set(KERNELS)
    assert len(tasks("full")) == 6 * 3 + 1  # select_topk: fp32 scores only
