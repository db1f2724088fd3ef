"""Hardware catalog: the GPUs and links Tessera simulates, with the datasheet numbers a roofline needs.

Every number is the vendor's theoretical peak (dense BF16, no sparsity; per-direction link
bandwidth); achievable fractions are applied by the cost models, not here.
"""
from __future__ import annotations

from tessera.types import GB, GPUSpec, LinkSpec

TB = 1e12
TFLOPS = 1e12
US = 1e-6
MiB = 2**20

# Link bandwidths are per direction; datasheets quote the bidirectional total (e.g. "NVLink 900 GB/s").
# PCIe is the theoretical line rate after 128b/130b encoding; achievable host<->device copies from
# pinned memory reach roughly 80% of it (~25 GB/s Gen4, ~50-55 GB/s Gen5); we keep the theoretical
# figure here so every link follows the same convention.
_LINKS = (
    # PCI-SIG PCIe 4.0 base spec: 16 GT/s x 16 lanes x 128/130 / 8 = 31.5 GB/s per direction
    # (NVIDIA datasheets: "PCIe Gen4: 64 GB/s" bidirectional). Latency: a small cudaMemcpyAsync
    # host<->device costs ~5-10 us end to end (DMA setup + launch).
    LinkSpec("PCIe-Gen4-x16", bandwidth_Bps=31.5 * GB, latency_s=8 * US),
    # PCIe 5.0 base spec: 32 GT/s x 16 x 128/130 / 8 = 63.0 GB/s per direction (datasheets: 128 GB/s).
    LinkSpec("PCIe-Gen5-x16", bandwidth_Bps=63.0 * GB, latency_s=8 * US),
    # NVIDIA A100 datasheet: "NVLink 600 GB/s" (12 NVLink3 links, bidirectional) = 300 per direction.
    # Latency: NCCL small-message collectives over NVLink measure ~5-10 us (Vidur a100_dgx table).
    LinkSpec("NVLink3-SXM", bandwidth_Bps=300 * GB, latency_s=5 * US),
    # NVIDIA H100 / H200 SXM datasheets: "NVLink 900 GB/s" (18 NVLink4 links) = 450 per direction.
    LinkSpec("NVLink4-SXM", bandwidth_Bps=450 * GB, latency_s=5 * US),
    # NVIDIA H100 NVL datasheet: "NVLink bridge 600 GB/s" between the two cards of a pair = 300.
    LinkSpec("NVLink4-NVL-bridge", bandwidth_Bps=300 * GB, latency_s=5 * US),
)

# hbm_bytes is the capacity the device reports (nvidia-smi `memory.total`, what vLLM's
# gpu_memory_utilization multiplies), not the datasheet's round decimal GB. Sources, nvidia-smi output
# quoted in public threads: A100-SXM4-80GB 81,920 MiB, H100 80GB HBM3 81,559 MiB, L40S 46,068 MiB
# (modal-labs/modal-client PR #2797, the totals of every GPU type they run); H100 81,559 MiB also in
# NVIDIA/nccl issue #1264 and wilicc/gpu-burn issue #114; H100 NVL 95,830 MiB (nvidia-smi dump in
# Rackspace's OpenStack Flex multi-GPU passthrough write-up) and H200 143,771 MiB (nvidia-smi dumps in
# several public GPU-operator walkthroughs; 143,771 MiB = 140.4 GiB = 150.8 decimal GB).
# The datasheet figures were 80/80/94/141/48 decimal GB. See docs/fidelity.md "Reported memory".
# peak_bf16_flops is the dense figure = half the datasheet's "with sparsity" one.
_GPUS = (
    # NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): HBM2e 2,039 GB/s, BF16 312 TFLOPS (dense).
    GPUSpec("A100-SXM-80GB", hbm_bytes=81920 * MiB, hbm_bandwidth_Bps=2.039 * TB,
            peak_bf16_flops=312 * TFLOPS, host_link="PCIe-Gen4-x16", peer_link="NVLink3-SXM"),
    # NVIDIA A100 Tensor Core GPU datasheet (40GB SXM): HBM2 1,555 GB/s, BF16 312 TFLOPS (dense). Capacity: CUDA's
    # total global memory, 42,405,855,232 bytes (deviceQuery on an A100-SXM4-40GB node, Paderborn PC2 wiki
    # "NVIDIA A100 40GB with NVLINK"); no public nvidia-smi total found, so this one is the CUDA figure (what
    # torch.cuda.mem_get_info and vLLM read), a few hundred MiB below what nvidia-smi would list.
    GPUSpec("A100-SXM-40GB", hbm_bytes=42405855232, hbm_bandwidth_Bps=1.555 * TB,
            peak_bf16_flops=312 * TFLOPS, host_link="PCIe-Gen4-x16", peer_link="NVLink3-SXM"),
    # NVIDIA A100 Tensor Core GPU datasheet (80GB PCIe): HBM2e 1,935 GB/s, BF16 312 TFLOPS (dense), 300 W. Without
    # the optional NVLink bridge (pairs only), GPU-GPU traffic goes over PCIe Gen4 (data/validation/
    # mlc_llm_perf_bench_vllm). Capacity: 81,920 MiB, the same total as the SXM4 card's, in nvidia-smi dumps of
    # "NVIDIA A100 80GB PCIe" quoted in public notes (e.g. "437MiB / 81920MiB" beside a "300W" power cap).
    GPUSpec("A100-PCIe-80GB", hbm_bytes=81920 * MiB, hbm_bandwidth_Bps=1.935 * TB,
            peak_bf16_flops=312 * TFLOPS, host_link="PCIe-Gen4-x16", peer_link="PCIe-Gen4-x16"),
    # NVIDIA H100 Tensor Core GPU datasheet (SXM): HBM3 3.35 TB/s, BF16 1,979 TFLOPS with sparsity
    # -> 989.4 dense (Hopper whitepaper table).
    GPUSpec("H100-SXM-80GB", hbm_bytes=81559 * MiB, hbm_bandwidth_Bps=3.35 * TB,
            peak_bf16_flops=989.4 * TFLOPS, host_link="PCIe-Gen5-x16", peer_link="NVLink4-SXM"),
    # NVIDIA H100 NVL datasheet (per GPU): 94 GB HBM3, 3.9 TB/s, BF16 1,671 TFLOPS with sparsity
    # -> 835.5 dense; PCIe Gen5 card, pairs joined by an NVLink bridge.
    GPUSpec("H100-NVL-94GB", hbm_bytes=95830 * MiB, hbm_bandwidth_Bps=3.9 * TB,
            peak_bf16_flops=835.5 * TFLOPS, host_link="PCIe-Gen5-x16", peer_link="NVLink4-NVL-bridge"),
    # NVIDIA H200 Tensor Core GPU datasheet (SXM): 141 GB HBM3e, 4.8 TB/s, BF16 1,979 TFLOPS with
    # sparsity -> 989.4 dense (same GH100 compute as H100 SXM).
    GPUSpec("H200-SXM-141GB", hbm_bytes=143771 * MiB, hbm_bandwidth_Bps=4.8 * TB,
            peak_bf16_flops=989.4 * TFLOPS, host_link="PCIe-Gen5-x16", peer_link="NVLink4-SXM"),
    # NVIDIA L40S datasheet: 48 GB GDDR6, 864 GB/s, BF16 362.05 TFLOPS dense (733 with sparsity);
    # no NVLink, so GPU-GPU traffic goes over PCIe Gen4.
    GPUSpec("L40S-48GB", hbm_bytes=46068 * MiB, hbm_bandwidth_Bps=0.864 * TB,
            peak_bf16_flops=362.05 * TFLOPS, host_link="PCIe-Gen4-x16", peer_link="PCIe-Gen4-x16"),
)

GPUS: dict[str, GPUSpec] = {g.name: g for g in _GPUS}
LINKS: dict[str, LinkSpec] = {lk.name: lk for lk in _LINKS}

# Short names accepted by gpu(); keys are normalised (lower case, '_' and ' ' -> '-').
_GPU_ALIASES = {
    "a100": "A100-SXM-80GB", "a100-80gb": "A100-SXM-80GB", "a100-sxm": "A100-SXM-80GB", "a100-40gb": "A100-SXM-40GB",
    "a100-pcie": "A100-PCIe-80GB",
    "h100": "H100-SXM-80GB", "h100-80gb": "H100-SXM-80GB", "h100-sxm": "H100-SXM-80GB",
    "h100-nvl": "H100-NVL-94GB", "h200": "H200-SXM-141GB", "h200-141gb": "H200-SXM-141GB",
    "l40s": "L40S-48GB",
}
_LINK_ALIASES = {
    "pcie4": "PCIe-Gen4-x16", "pcie-gen4": "PCIe-Gen4-x16",
    "pcie5": "PCIe-Gen5-x16", "pcie-gen5": "PCIe-Gen5-x16",
    "nvlink3": "NVLink3-SXM", "nvlink4": "NVLink4-SXM", "nvlink-nvl": "NVLink4-NVL-bridge",
}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _lookup(name: str, table: dict, aliases: dict[str, str], kind: str):
    key = _norm(name)
    for canonical, spec in table.items():
        if _norm(canonical) == key:
            return spec
    if key in aliases:
        return table[aliases[key]]
    raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(table)} "
                   f"(aliases: {', '.join(sorted(aliases))})")


def gpu(name: str) -> GPUSpec:
    """The GPUSpec called `name` (canonical name or alias, case-insensitive)."""
    return _lookup(name, GPUS, _GPU_ALIASES, "GPU")


def link(name: str) -> LinkSpec:
    """The LinkSpec called `name` (canonical name or alias, case-insensitive)."""
    return _lookup(name, LINKS, _LINK_ALIASES, "link")


def list_gpus() -> list[str]:
    return list(GPUS)


def list_links() -> list[str]:
    return list(LINKS)


def host_link(g: GPUSpec) -> LinkSpec:
    """The GPU's host (PCIe) link."""
    return link(g.host_link)


def peer_link(g: GPUSpec) -> LinkSpec:
    """The GPU's GPU-GPU link inside a node."""
    return link(g.peer_link)
