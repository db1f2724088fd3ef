"""The bench phase's goals from benchmarks/kernels.py rows, and cuda_row's code path on a tiny CPU case
(the Triton interpreter stands in for the GPU; only the timer differs)."""
import importlib.util

import pytest
import torch

from tessera.gpu_check.bench_targets import targets
from tessera.paths import REPO_ROOT

ROW = {"context": 32768, "batch": 16, "dense_s": 2e-3, "dense_ref_s": 0.1, "sdpa_s": 3e-3, "sparse_s": 2.5e-4,
       "sparse_ref_s": 1e-3, "k_pages": 64, "dense_GBps": 2500.0, "sparse_GBps": 600.0, "dense_of_peak": 0.75,
       "sparse_of_peak": 0.18, "dense_over_sparse": 8.0}
LINK = {"bytes": 2**27, "link_h2d_GBps": 50.0, "link_d2h_GBps": 50.0, "copy_blocks_h2d_GBps": 45.0,
        "copy_blocks_d2h_GBps": 30.0}


def find(items, prefix):
    (match,) = [t for t in items if t["name"].startswith(prefix)]
    return match


def test_goals_and_values():
    t = targets([ROW], LINK, measured_copy_GBps=2800.0)
    dense = find(t, "dense paged decode, fraction of peak")
    assert dense["value"] == pytest.approx(75.0) and dense["goal"] == 70.0
    assert find(t, "sparse")["value"] == 8.0 and find(t, "sparse")["goal"] == 5.0
    assert find(t, "copy_blocks H2D")["value"] == pytest.approx(90.0)
    assert find(t, "copy_blocks D2H")["value"] == pytest.approx(60.0)
    assert find(t, "dense paged decode vs SDPA")["value"] == pytest.approx(1.5)
    assert find(t, "dense paged decode, fraction of a measured")["value"] == pytest.approx(2500 / 28)


def test_missing_case_is_reported_as_none():
    t = targets([{**ROW, "context": 4096}], None)
    assert all(x["value"] is None for x in t if "goal" in x)


def test_cuda_row_on_a_tiny_case_in_the_interpreter():
    spec = importlib.util.spec_from_file_location("bench_kernels", REPO_ROOT / "benchmarks" / "kernels.py")
    bk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bk)
    gen = torch.Generator().manual_seed(0)
    pool = bk.fill_pool(2 * 2 * 64 // 16, 64, torch.float32, "cpu", gen)
    case = bk.make_case(pool, 2, 64, 8, 2, 2, gen)
    row = bk.cuda_row(case, 2, 1, 1e10, timer=lambda fn, repeats: (fn(), 1e-3)[1])
    assert (row["context"], row["batch"], row["k_pages"]) == (64, 2, 2)
    assert row["dense_over_sparse"] == 1.0 and row["dense_of_peak"] == pytest.approx(case.kv_bytes(4) / 1e-3 / 1e10)
