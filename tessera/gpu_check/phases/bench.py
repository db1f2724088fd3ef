"""Phase c, bench: benchmarks/kernels.py's CUDA branch (cuda_row, copy_link) on the Llama-3-8B layer shape:
dense and sparse paged decode vs SDPA on gathered K/V, in achieved GB/s against the device's peak HBM
bandwidth; copy_blocks host <-> device against a pinned copy of the same bytes. Goals are report lines.
"""
from __future__ import annotations

import importlib.util
import math

import torch

from tessera.gpu_check.bench_targets import targets
from tessera.gpu_check.result import Recorder
from tessera.paths import REPO_ROOT

CASES = [(32768, 16), (4096, 16), (32768, 1)]  # (context, batch); the first is the target case
HEADS, KV_HEADS, HEAD_DIM, K_PAGES, REPEATS = 32, 8, 128, 64, 5


def load_benchmark():
    """benchmarks/kernels.py (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("tessera_benchmark_kernels", REPO_ROOT / "benchmarks" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured_copy_GBps(bk) -> float:
    """Read + write bytes per second of a 1 GiB device-to-device copy."""
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    bps = 2 * x.nbytes / bk.time_cuda(lambda: y.copy_(x), REPEATS)
    del x, y
    return bps / 1e9


def run(rec: Recorder, device: str) -> None:
    if device != "cuda":
        rec.skip("bench", "needs CUDA")
        return
    bk = load_benchmark()
    peak, source = bk.gpu_peak_bandwidth(torch.device("cuda"))
    copy = measured_copy_GBps(bk)
    rec.info("peak HBM", {"bytes_per_s": peak, "source": source, "measured_copy_GBps": copy})
    gen = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16
    rows = []
    with torch.no_grad():
        pool = bk.fill_pool(max(b for _, b in CASES) * KV_HEADS * max(c for c, _ in CASES) // 16, HEAD_DIM, dtype,
                            "cuda", gen)
        for context, batch in CASES:
            c = bk.make_case(pool, batch, context, HEADS, KV_HEADS, K_PAGES, gen)
            if (context, batch) == CASES[0]:
                from tessera.kernels import dispatch
                args = (c.q, c.kv_pool, c.block_tables, c.seq_lens)
                err = (dispatch.paged_decode_attention(*args, impl="triton").float()
                       - dispatch.paged_decode_attention(*args, impl="ref").float()).abs().max().item()
                rec.check(f"dense Triton = reference at context {context}, batch {batch}", err <= 2e-2,
                          f"max |err| {err:.2e}", "bf16 tolerance 2e-2")
            rows.append(bk.cuda_row(c, K_PAGES, REPEATS, peak))
            rec.table(f"paged decode, bf16, Hq={HEADS} Hkv={KV_HEADS} D={HEAD_DIM}, K={K_PAGES} (peak {source} "
                      f"{peak / 1e12:.2f} TB/s)", rows)
        del pool
        torch.cuda.empty_cache()
        link = bk.copy_link(dtype, HEAD_DIM)
    rec.table("copy_blocks vs the link (GB/s)", [link])
    for t in targets(rows, link, copy):
        rec.target(**t)
    numbers = [v for r in rows + [link] for v in r.values() if isinstance(v, float)]
    rec.check("benchmarks ran with finite, positive results", all(math.isfinite(v) and v > 0 for v in numbers),
              f"{len(rows)} decode cases + the copy")
