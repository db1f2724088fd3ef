"""Sparse (top-K pages) vs dense paged decode attention, in achieved GB/s against this machine's memory.

CPU: the torch reference path (what the CPU runtime runs), against read bandwidth measured in the same
run. CUDA: the Triton kernels against the torch reference and against SDPA on K/V gathered beforehand
(a contiguous-cache baseline), against the GPU's peak HBM bandwidth; then copy_blocks between the device
and a pinned host pool against a plain pinned copy (the PCIe link). tessera.gpu_check's bench phase calls
cuda_row and copy_link.
Layer shape: Llama-3-8B (32 query heads, 8 KV heads, head_dim 128); every KV head's pages are
scattered at random over the pool, as after fragmentation (default), or `--layout fresh`: adjacent per
head, as runtime/kv_cache.py allocates a prompt prefilled in one chunk.

    .venv/bin/python benchmarks/kernels.py                      # CPU, fp32, the full table
    .venv/bin/python benchmarks/kernels.py --contexts 4096 --batches 1 4
    .venv/bin/python benchmarks/kernels.py --threads 1             # on a loaded machine (OpenMP barriers)
    .venv/bin/python benchmarks/kernels.py --threads 1 --thp       # pool on transparent huge pages
    .venv/bin/python benchmarks/kernels.py --threads 1 --layout fresh   # pages adjacent per head
Columns "of BW" are achieved K/V GB/s (the K and V bytes of the pages each op must read) over the
measured bandwidth, a streaming read-only sum. Two ceilings, as fractions of it, read the dense
case's pages without the attention math: "gather-only" copies them into a cache-sized buffer (the
reference's K path), "page reads" only reads them (embedding_bag sums, no copy): no path that reads
pages scattered like these can beat "page reads" on this core. With one torch thread, times are the
thread's CPU time (a shared machine's preemption left out), else wall time.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tessera.kernels import dispatch
from tessera.kernels._decode_common import _RefPlan
from tessera.kernels.layout import PAGE_SIZE

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Peak HBM bandwidth (bytes/s) by device-name fragment; anything else falls back to a measured copy.
GPU_PEAK_BPS = {"H100 SXM": 3.35e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12,
                "A100-SXM4-80GB": 2.04e12, "A100": 1.56e12, "L40S": 0.864e12, "A10G": 0.6e12, "L4": 0.3e12}


@dataclass
class Case:
    q: torch.Tensor
    kv_pool: torch.Tensor
    block_tables: torch.Tensor
    seq_lens: torch.Tensor
    pages: torch.Tensor  # top-K page lists (random K - 1 pages + the current one)
    minmax: torch.Tensor

    def kv_bytes(self, num_pages: int) -> int:
        """K and V bytes of `num_pages` pages for every (seq, KV head)."""
        num_seqs, num_kv_heads = self.block_tables.shape[:2]
        return 2 * num_seqs * num_kv_heads * num_pages * PAGE_SIZE * self.kv_pool.shape[3] * self.kv_pool.element_size()


def make_case(pool: torch.Tensor, num_seqs: int, context: int, num_heads: int, num_kv_heads: int,
              k_pages: int, gen: torch.Generator, layout: str = "fragmented") -> Case:
    """Sequences of `context` tokens whose pages are blocks of `pool` (shared, never written): scattered at
    random ("fragmented", after long churn) or adjacent per head ("fresh", as a new prompt is allocated)."""
    device, dtype, head_dim = pool.device, pool.dtype, pool.shape[3]
    num_pages = context // PAGE_SIZE
    total = num_seqs * num_kv_heads * num_pages
    if layout == "fresh":  # runtime/kv_cache.py's allocator after a one-chunk prefill: a head's pages are adjacent
        tables = torch.arange(total).view(num_seqs, num_kv_heads, num_pages)
    else:
        tables = torch.randperm(pool.shape[1], generator=gen)[:total].view(num_seqs, num_kv_heads, num_pages)
    lens = torch.full((num_seqs,), context, dtype=torch.int32)
    chosen = torch.rand(num_seqs, num_kv_heads, num_pages - 1, generator=gen).topk(k_pages - 1, dim=-1).indices
    last = torch.full((num_seqs, num_kv_heads, 1), num_pages - 1)
    pages = torch.cat((chosen, last), dim=-1).sort(dim=-1).values
    q = torch.randn(num_seqs, num_heads, head_dim, generator=gen).to(dtype)
    minmax = torch.randn(pool.shape[1], 2, head_dim, generator=gen).to(dtype)
    return Case(q.to(device), pool, tables.int().to(device), lens.to(device), pages.int().to(device),
                minmax.to(device))


def fill_pool(num_blocks: int, head_dim: int, dtype: torch.dtype, device: str, gen: torch.Generator,
              huge_pages: bool = False) -> torch.Tensor:
    """A pool of random-looking values, filled by tiling a small random tensor (randn on GBs is slow)."""
    tile = torch.randn(2, 256, PAGE_SIZE, head_dim, generator=gen).to(dtype)
    pool = torch.empty(2, num_blocks, PAGE_SIZE, head_dim, dtype=dtype, device=device)
    if huge_pages:
        advise_huge_pages(pool)
    for b0 in range(0, num_blocks, 256):
        n = min(256, num_blocks - b0)
        pool[:, b0:b0 + n] = tile[:, :n].to(device)
    return pool


def advise_huge_pages(t: torch.Tensor) -> None:
    """madvise(MADV_HUGEPAGE) on t's memory before it is first touched (Linux THP in madvise mode)."""
    start = (t.data_ptr() + (1 << 21) - 1) & ~((1 << 21) - 1)
    length = (t.data_ptr() + t.nbytes - start) & ~((1 << 21) - 1)
    madvise = ctypes.CDLL(None).madvise
    if sys.platform != "linux" or length <= 0 or madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), 14):
        raise SystemExit("--thp: madvise(MADV_HUGEPAGE) failed")  # 14 = MADV_HUGEPAGE


def cpu_clock():
    """Thread CPU time when torch runs on this thread alone, else wall time."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def time_cpu(fn, repeats: int) -> float:
    """Best of `repeats` times after a warm-up (the machine is shared: the best is the least noisy)."""
    clock = cpu_clock()
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def time_cuda(fn, repeats: int) -> float:
    import triton.testing
    return triton.testing.do_bench(fn, warmup=5, rep=max(repeats * 20, 50), return_mode="median") / 1e3


def cpu_read_bandwidth(repeats: int) -> float:
    """Bytes/s of a sum over 512 MiB (read-only, like attention over K/V): best of `repeats`."""
    x = torch.ones(128 * 2**20)
    return x.nbytes / time_cpu(lambda: x.sum(), repeats)


def gpu_peak_bandwidth(device: torch.device) -> tuple[float, str]:
    name = torch.cuda.get_device_name(device)
    for fragment, bps in GPU_PEAK_BPS.items():
        if fragment in name:
            return bps, f"{name} peak (spec sheet)"
    x = torch.empty(2**28, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    return 2 * x.nbytes / time_cuda(lambda: y.copy_(x), 10), f"{name} measured copy"


def gather_only(c: Case) -> None:
    """Copies the dense case's K and V pages into a buffer the size of the reference's K chunks."""
    num_pages = c.block_tables.shape[2]
    ids = c.block_tables.long().view(-1)
    plan = _RefPlan(c.kv_pool, ids.numel() // num_pages, num_pages, c.q.shape[1] // c.block_tables.shape[1])
    step = plan.sub_rows * plan.cols
    buf = torch.empty(step, *c.kv_pool.shape[2:], dtype=c.kv_pool.dtype)
    for pool in c.kv_pool:
        for i in range(0, ids.numel(), step):
            torch.index_select(pool, 0, ids[i:i + step], out=buf[:len(ids[i:i + step])])


def page_reads(c: Case, pages_per_call: int = 4096) -> None:
    """Reads every K and V row of the dense case's pages in place: one embedding_bag sum per page."""
    head_dim = c.kv_pool.shape[3]
    ids = c.block_tables.long().view(-1)
    offsets = torch.arange(0, pages_per_call * PAGE_SIZE, PAGE_SIZE)
    for pool in c.kv_pool:
        table = pool.view(-1, head_dim)
        for i in range(0, ids.numel(), pages_per_call):
            slots = (ids[i:i + pages_per_call, None] * PAGE_SIZE + torch.arange(PAGE_SIZE)).view(-1)
            torch.nn.functional.embedding_bag(slots, table, offsets[:len(slots) // PAGE_SIZE], mode="sum")


def run_cpu(args, gen: torch.Generator) -> None:
    dtype = DTYPES[args.dtype]
    bandwidth = cpu_read_bandwidth(args.repeats)
    clock = "thread CPU" if cpu_clock() is time.thread_time else "wall"
    print(f"CPU, {torch.get_num_threads()} torch threads, {args.dtype}, Hq={args.heads} Hkv={args.kv_heads} "
          f"D={args.head_dim}, K={args.k_pages} pages; measured read bandwidth {bandwidth / 1e9:.1f} GB/s (sum over "
          f"512 MiB, best of {args.repeats}); times are best of {args.repeats} ({clock} time); pool on "
          f"{'huge' if args.thp else '4 KiB'} pages; page layout {args.layout}")
    print(f"{'context':>8} {'batch':>5} | {'dense ms':>9} {'GB/s':>6} {'of BW':>6} | {'sparse ms':>9} {'GB/s':>6} "
          f"{'of BW':>6} | {'dense/sparse':>12} | {'score+topk ms':>13} | {'gather-only':>11} {'page reads':>10}")
    max_blocks = max(args.batches) * args.kv_heads * max(args.contexts) // PAGE_SIZE
    pool = fill_pool(max_blocks, args.head_dim, dtype, "cpu", gen, huge_pages=args.thp)
    for context in args.contexts:
        for num_seqs in args.batches:
            c = make_case(pool, num_seqs, context, args.heads, args.kv_heads, args.k_pages, gen, args.layout)
            dense_s = time_cpu(lambda: dispatch.paged_decode_attention(c.q, c.kv_pool, c.block_tables, c.seq_lens),
                               args.repeats)
            sparse_s = time_cpu(lambda: dispatch.sparse_paged_decode_attention(
                c.q, c.kv_pool, c.block_tables, c.seq_lens, c.pages), args.repeats)
            select_s = time_cpu(lambda: dispatch.select_topk(
                dispatch.score_pages(c.q, c.minmax, c.block_tables, c.seq_lens), args.k_pages), args.repeats)
            gather_s = time_cpu(lambda: gather_only(c), args.repeats)
            reads_s = time_cpu(lambda: page_reads(c), args.repeats)
            dense_bps = c.kv_bytes(context // PAGE_SIZE) / dense_s
            sparse_bps = c.kv_bytes(args.k_pages) / sparse_s
            print(f"{context:>8} {num_seqs:>5} | {dense_s * 1e3:>9.2f} {dense_bps / 1e9:>6.1f} {dense_bps / bandwidth:>6.0%} "
                  f"| {sparse_s * 1e3:>9.2f} {sparse_bps / 1e9:>6.1f} {sparse_bps / bandwidth:>6.0%} "
                  f"| {dense_s / sparse_s:>11.1f}x | {select_s * 1e3:>13.2f} | "
                  f"{c.kv_bytes(context // PAGE_SIZE) / gather_s / bandwidth:>11.0%} "
                  f"{c.kv_bytes(context // PAGE_SIZE) / reads_s / bandwidth:>10.0%}")


def cuda_row(c: Case, k_pages: int, repeats: int, peak: float, timer=None) -> dict:
    """One (context, batch) case: the Triton kernels (dense; sparse over `k_pages` pages) against the torch
    reference and SDPA on K/V gathered beforehand (a contiguous-cache baseline). Times in seconds (medians
    of triton.testing.do_bench unless `timer` says otherwise), fractions of `peak` bytes/s."""
    timer = timer or time_cuda
    num_seqs, kv_heads, num_pages = c.block_tables.shape
    heads, head_dim = c.q.shape[1:]
    context = num_pages * PAGE_SIZE
    dense = (c.q, c.kv_pool, c.block_tables, c.seq_lens)
    t_tri = timer(lambda: dispatch.paged_decode_attention(*dense, impl="triton"), repeats)
    t_ref = timer(lambda: dispatch.paged_decode_attention(*dense, impl="ref"), repeats)
    # Contiguous K/V gathered outside the timing: [B, Hkv, T, D]; SDPA expands the GQA groups.
    ids = c.block_tables.long().view(num_seqs, kv_heads, -1)
    k = c.kv_pool[0][ids].view(num_seqs, kv_heads, context, head_dim)
    v = c.kv_pool[1][ids].view(num_seqs, kv_heads, context, head_dim)
    q4 = c.q.view(num_seqs, heads, 1, head_dim)
    t_sdpa = timer(lambda: F.scaled_dot_product_attention(q4, k, v, enable_gqa=heads > kv_heads), repeats)
    del k, v
    sparse = (*dense, c.pages)
    s_tri = timer(lambda: dispatch.sparse_paged_decode_attention(*sparse, impl="triton"), repeats)
    s_ref = timer(lambda: dispatch.sparse_paged_decode_attention(*sparse, impl="ref"), repeats)
    return {"context": context, "batch": num_seqs, "dense_s": t_tri, "dense_ref_s": t_ref, "sdpa_s": t_sdpa,
            "sparse_s": s_tri, "sparse_ref_s": s_ref, "k_pages": k_pages,
            "dense_GBps": c.kv_bytes(num_pages) / t_tri / 1e9, "sparse_GBps": c.kv_bytes(k_pages) / s_tri / 1e9,
            "dense_of_peak": c.kv_bytes(num_pages) / t_tri / peak,
            "sparse_of_peak": c.kv_bytes(k_pages) / s_tri / peak, "dense_over_sparse": t_tri / s_tri}


def copy_link(dtype: torch.dtype, head_dim: int, num_blocks: int = 16384, repeats: int = 5) -> dict:
    """copy_blocks between a device pool and a pinned host pool (offload D2H, reload H2D; pairs in random
    order, as after churn) against the link: a plain pinned <-> device copy of the same bytes."""
    dev = torch.ones(2, num_blocks, PAGE_SIZE, head_dim, dtype=dtype, device="cuda")
    host = torch.empty(2, num_blocks, PAGE_SIZE, head_dim, dtype=dtype, pin_memory=True)
    host.fill_(2.0)
    src, dst = torch.randperm(num_blocks, device="cuda"), torch.randperm(num_blocks, device="cuda")
    nbytes = dev.nbytes
    times = {"link_h2d": time_cuda(lambda: dev.copy_(host, non_blocking=True), repeats),
             "link_d2h": time_cuda(lambda: host.copy_(dev, non_blocking=True), repeats),
             "copy_blocks_h2d": time_cuda(lambda: dispatch.copy_blocks(host, dev, src, dst, impl="triton"), repeats),
             "copy_blocks_d2h": time_cuda(lambda: dispatch.copy_blocks(dev, host, src, dst, impl="triton"), repeats)}
    return {"bytes": nbytes, **{f"{k}_GBps": nbytes / t / 1e9 for k, t in times.items()}}


def run_cuda(args, gen: torch.Generator) -> list[dict]:
    device = torch.device("cuda")
    dtype = DTYPES[args.dtype]
    peak, source = gpu_peak_bandwidth(device)
    print(f"{args.dtype}, Hq={args.heads} Hkv={args.kv_heads} D={args.head_dim}, K={args.k_pages} pages; "
          f"bandwidth {peak / 1e12:.2f} TB/s ({source}); medians of triton.testing.do_bench")
    print(f"{'context':>8} {'batch':>5} | {'triton dense ms':>15} {'of BW':>6} | {'ref dense':>9} {'sdpa':>8} "
          f"{'ref/tri':>7} {'sdpa/tri':>8} | {'triton sparse ms':>16} {'of BW':>6} {'ref/tri':>7} | "
          f"{'dense/sparse':>12}")
    max_blocks = max(args.batches) * args.kv_heads * max(args.contexts) // PAGE_SIZE
    pool = fill_pool(max_blocks, args.head_dim, dtype, "cuda", gen)
    rows = []
    for context in args.contexts:
        for num_seqs in args.batches:
            c = make_case(pool, num_seqs, context, args.heads, args.kv_heads, args.k_pages, gen)
            r = cuda_row(c, args.k_pages, args.repeats, peak)
            print(f"{context:>8} {num_seqs:>5} | {r['dense_s'] * 1e3:>15.3f} {r['dense_of_peak']:>6.0%} | "
                  f"{r['dense_ref_s'] * 1e3:>9.3f} {r['sdpa_s'] * 1e3:>8.3f} {r['dense_ref_s'] / r['dense_s']:>6.1f}x "
                  f"{r['sdpa_s'] / r['dense_s']:>7.2f}x | {r['sparse_s'] * 1e3:>16.3f} {r['sparse_of_peak']:>6.0%} "
                  f"{r['sparse_ref_s'] / r['sparse_s']:>6.1f}x | {r['dense_over_sparse']:>11.1f}x")
            rows.append(r)
    del pool
    link = copy_link(dtype, args.head_dim)
    ways = [f"{way.upper()} {link[f'copy_blocks_{way}_GBps']:.1f} GB/s = "
            f"{link[f'copy_blocks_{way}_GBps'] / link[f'link_{way}_GBps']:.0%} of {link[f'link_{way}_GBps']:.1f}"
            for way in ("h2d", "d2h")]
    print(f"copy_blocks, {link['bytes'] / 2**20:.0f} MiB of pages in random order, vs a pinned copy of the same "
          f"bytes: {'; '.join(ways)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None, help="default: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384, 32768])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--k-pages", type=int, default=64)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--thp", action="store_true", help="CPU: put the KV pool on transparent huge pages")
    parser.add_argument("--layout", choices=["fragmented", "fresh"], default="fragmented",
                        help="pages scattered at random, or adjacent per head as the runtime allocates a new prompt")
    args = parser.parse_args()
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.dtype = args.dtype or ("bf16" if use_cuda else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    with torch.no_grad():
        (run_cuda if use_cuda else run_cpu)(args, gen)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
