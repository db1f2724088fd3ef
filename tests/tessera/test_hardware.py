"""Hardware catalog: datasheet numbers, links resolve, lookups and their errors."""
import pytest

from tessera.hardware import GPUS, LINKS, gpu, host_link, link, list_gpus, list_links, peer_link
from tessera.types import GB


def test_catalog_lists_the_required_gpus_and_links():
    assert set(list_gpus()) == {"A100-SXM-80GB", "A100-PCIe-80GB", "A100-SXM-40GB", "H100-SXM-80GB",
                                "H100-NVL-94GB", "H200-SXM-141GB", "L40S-48GB"}
    assert {"PCIe-Gen4-x16", "PCIe-Gen5-x16"} <= set(list_links())


@pytest.mark.parametrize("name", list(GPUS))
def test_every_gpu_has_positive_numbers_and_known_links(name):
    g = gpu(name)
    assert g.hbm_bytes > 0 and g.hbm_bandwidth_Bps > 0 and g.peak_bf16_flops > 0
    assert host_link(g).name.startswith("PCIe")
    assert peer_link(g).bandwidth_Bps >= host_link(g).bandwidth_Bps


def test_nvlink_is_per_direction_half_of_the_datasheet_total():
    assert link("NVLink3-SXM").bandwidth_Bps == 300 * GB  # A100: 600 GB/s total
    assert link("NVLink4-SXM").bandwidth_Bps == 450 * GB  # H100 SXM: 900 GB/s total
    assert link("NVLink4-NVL-bridge").bandwidth_Bps == 300 * GB  # H100 NVL bridge: 600 GB/s total
    assert peer_link(gpu("A100")).name == "NVLink3-SXM"
    assert peer_link(gpu("H100-NVL")).name == "NVLink4-NVL-bridge"
    assert peer_link(gpu("a100-pcie")).name == "PCIe-Gen4-x16"  # no NVLink bridge: TP traffic over PCIe


def test_pcie_bandwidth_is_the_theoretical_per_direction_rate():
    assert link("pcie4").bandwidth_Bps == pytest.approx(31.5 * GB)
    assert link("PCIe-Gen5-x16").bandwidth_Bps == pytest.approx(63.0 * GB)
    assert all(lk.latency_s > 0 for lk in LINKS.values())


def test_the_two_a100s_differ_in_memory_only():
    a40, a80 = gpu("a100-40gb"), gpu("a100")
    assert a40.hbm_bandwidth_Bps == pytest.approx(1.555e12) and a80.hbm_bandwidth_Bps == pytest.approx(2.039e12)
    assert a40.hbm_bytes < 40 * 2**30 < a80.hbm_bytes
    assert (a40.peak_bf16_flops, a40.peer_link, a40.host_link) == (a80.peak_bf16_flops, a80.peer_link, a80.host_link)


def test_peak_flops_are_dense():
    assert gpu("H100-SXM-80GB").peak_bf16_flops == pytest.approx(989.4e12)
    assert gpu("a100").peak_bf16_flops == pytest.approx(312e12)


def test_lookup_is_case_insensitive_and_accepts_aliases():
    assert gpu("h100_sxm_80gb") is GPUS["H100-SXM-80GB"]
    assert gpu("H200").name == "H200-SXM-141GB"
    assert gpu("l40s").peer_link == "PCIe-Gen4-x16"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match="A100-SXM-80GB"):
        gpu("V100")
    with pytest.raises(KeyError, match="PCIe-Gen4-x16"):
        link("infiniband")
