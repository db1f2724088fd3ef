"""Communication costs and the interpolation table they share with the profiles."""
import pandas as pd
import pytest

from tessera.cost import AllReduceTable, ring_all_reduce_time, transfer_time
from tessera.cost.interp import PiecewiseLinear
from tessera.cost.network import all_reduce_time_fn
from tessera.hardware import gpu, link
from tessera.paths import data_path


def test_piecewise_linear_clamps_below_interpolates_and_scales_above():
    f = PiecewiseLinear([(10, 1.0), (20, 3.0), (20, 5.0)])
    assert f(5) == 1.0
    assert f(15) == pytest.approx(2.5)  # (20 -> mean of 3 and 5 = 4)
    assert f(40) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        PiecewiseLinear([])


def test_ring_all_reduce_formula():
    nvlink = link("NVLink4-SXM")
    num_bytes = 450e9
    assert ring_all_reduce_time(num_bytes, 4, nvlink) == pytest.approx(nvlink.latency_s + 1.5)
    assert ring_all_reduce_time(num_bytes, 1, nvlink) == 0.0


def test_transfer_time():
    pcie = link("PCIe-Gen4-x16")
    assert transfer_time(31.5e9, pcie) == pytest.approx(1.0 + pcie.latency_s)


def test_nccl_table_matches_a_measured_row():
    df = pd.read_csv(data_path("vidur-profiling", "network", "h100_dgx", "all_reduce.csv"))
    row = df[(df.num_workers == 4) & (df["size"] == 1 << 20)]
    if row.empty:
        row = df[df.num_workers == 4].iloc[[100]]
    size, ms = int(row["size"].iloc[0]), float(row["time_stats.all_reduce.median"].iloc[0])
    assert AllReduceTable("h100_dgx", 4)(size) == pytest.approx(ms * 1e-3)


def test_gpus_without_a_table_use_the_peer_link():
    l40s = gpu("L40S")
    fn = all_reduce_time_fn(l40s, 2)
    assert fn(1e6) == ring_all_reduce_time(1e6, 2, link(l40s.peer_link))
    with pytest.raises(ValueError, match="measured worker counts"):
        AllReduceTable("h100_dgx", 16)
