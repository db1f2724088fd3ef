"""What dense and sparse paged decode attention share: the per-tile online-softmax step, the
split-KV reduce pass, the split plan, and the torch reference core.

Split-KV (flash-decoding): each (seq, KV head) is cut into `num_splits` ranges of pages; each
program writes its range's normalised output and log2-sum-exp, and the reduce pass merges them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._triton_utils import autotune_configs
from tessera.kernels.layout import PAGE_SIZE, check

# Dense and sparse decode kernels share one tuning space (a single config under the interpreter).
DECODE_AUTOTUNE_CONFIGS = autotune_configs([
    triton.Config({"PAGES_PER_ITER": 4}, num_warps=4, num_stages=2),
    triton.Config({"PAGES_PER_ITER": 2}, num_warps=4, num_stages=2),
    triton.Config({"PAGES_PER_ITER": 4}, num_warps=4, num_stages=3),
    triton.Config({"PAGES_PER_ITER": 8}, num_warps=8, num_stages=2)])

MAX_SPLITS = 64
MIN_PAGES_PER_SPLIT = 8  # 128 tokens: less than this is not worth a program and a reduce row
REF_TILE_BYTES = 2 << 20  # score_pages reference: metadata gathered per tile of this many fp32 bytes
REF_CHUNK_BYTES = 1 << 20  # decode reference: fp32 K bytes per gather (L2-sized; measured best)
REF_SCORE_BYTES = 1 << 20  # decode reference: fp32 scores of one block of rows (they stay in L2/L3)
MIN_CHUNK_COLS = 8  # decode reference: pages per row in a chunk, at least
REF_ONE_SHOT_BYTES = 256 << 10  # decode reference: up to this much fp32 K, decode_oracle's fewer ops win
# dense decode reference: up to this much fp32 K (about an L2's worth), one gather of K and V and two bmm beat
# the chunked path (SmolLM2, 1 thread: 0.28 vs 0.47 ms per layer at 1k tokens, 2.2 vs 1.0 ms at 2k)
DENSE_ONE_SHOT_BYTES = 1 << 20
LOG2E = 1.4426950408889634


@triton.jit
def _attend_tokens(q, m_i, l_i, acc, page, tok_ok, bt_row, num_pages_tbl,
                   kv_ptr, stride_kv, stride_block, stride_tok, num_blocks,
                   seq_len, lo, num_sinks, qk_scale,
                   PAGE: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
                   UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """One online-softmax step over BLOCK_N token slots; slot i is token i % PAGE of logical page
    page[i]. q: [BLOCK_G, D]; m_i, l_i: [BLOCK_G] (log2 domain); acc: [BLOCK_G, D] fp32."""
    j = tl.arange(0, BLOCK_N) % PAGE
    ok = tok_ok & (page >= 0) & (page < num_pages_tbl)
    blk = tl.load(bt_row + page, mask=ok, other=-1).to(tl.int64)
    pos = page * PAGE + j
    ok = ok & (blk >= 0) & (blk < num_blocks) & (pos < seq_len) & ((pos >= lo) | (pos < num_sinks))
    d = tl.arange(0, D)
    k_ptrs = kv_ptr + blk[:, None] * stride_block + j[:, None] * stride_tok + d[None, :]
    k = tl.load(k_ptrs, mask=ok[:, None], other=0.0)
    v = tl.load(k_ptrs + stride_kv, mask=ok[:, None], other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BLOCK_G, BLOCK_N]
    s = tl.where(ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing valid yet: avoid -inf - -inf
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _store_partial(o_ptr, lse_ptr, m_i, l_i, acc, b, h, split,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                   GROUP: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr):
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    heads = h * GROUP + g
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    tl.store(o_ptr + b * stride_ob + heads[:, None] * stride_oh + split * stride_os + d[None, :], out,
             mask=g[:, None] < GROUP)
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=g < GROUP)


@triton.jit
def _reduce_splits_kernel(o_part_ptr, lse_ptr, out_ptr, num_splits,
                          stride_pb, stride_ph, stride_ps, stride_lb, stride_lh, stride_ob, stride_oh,
                          D: tl.constexpr, BLOCK_S: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    sp = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + sp, mask=sp < num_splits, other=float("-inf"))
    m = tl.max(lse, axis=0)
    w = tl.exp2(lse - tl.where(m == float("-inf"), 0.0, m))  # empty splits weigh 0
    o = tl.load(o_part_ptr + b * stride_pb + h * stride_ph + sp[:, None] * stride_ps + d[None, :],
                mask=sp[:, None] < num_splits, other=0.0)
    den = tl.sum(w, axis=0)
    out = tl.sum(w[:, None] * o, axis=0) / tl.where(den > 0, den, 1.0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty))


def plan_splits(num_items: int, num_programs: int, device: torch.device,
                num_splits: int | None) -> tuple[int, int]:
    """(num_splits, items_per_split) for `num_items` pages per (seq, KV head).

    Default on CUDA: enough splits for about two programs per SM (flash-decoding); elsewhere 2, so the
    interpreter always exercises the reduce pass.
    """
    if num_items == 0:
        return 1, 1
    if num_splits is None:
        if device.type == "cuda":
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            num_splits = triton.cdiv(2 * sms, max(num_programs, 1))
        else:
            num_splits = 2
        num_splits = min(num_splits, triton.cdiv(num_items, MIN_PAGES_PER_SPLIT))
    check(num_splits >= 1, f"num_splits must be >= 1, got {num_splits}")
    num_splits = max(1, min(num_splits, MAX_SPLITS, num_items))
    per_split = triton.cdiv(num_items, num_splits)
    return triton.cdiv(num_items, per_split), per_split


def reduce_splits(o_part: torch.Tensor, lse: torch.Tensor, out: torch.Tensor) -> None:
    """out[b, h] = lse-weighted mean of o_part[b, h, :]; o_part [B, Hq, S, D], lse [B, Hq, S] (log2)."""
    num_seqs, num_heads, num_splits, head_dim = o_part.shape
    _reduce_splits_kernel[(num_seqs, num_heads)](
        o_part, lse, out, num_splits,
        o_part.stride(0), o_part.stride(1), o_part.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        D=head_dim, BLOCK_S=triton.next_power_of_2(num_splits))


def window_per_head(window: int | torch.Tensor | None, num_kv_heads: int, device: torch.device) -> torch.Tensor:
    """int32 [num_kv_heads] sliding-window length per KV head; <= 0 means the head sees everything."""
    if window is None:
        return torch.zeros(num_kv_heads, dtype=torch.int32, device=device)
    if isinstance(window, int):
        return torch.full((num_kv_heads,), window, dtype=torch.int32, device=device)
    check(window.shape == (num_kv_heads,), f"window must be an int or [num_kv_heads={num_kv_heads}], "
          f"got {list(window.shape)}")
    return window.to(device=device, dtype=torch.int32).contiguous()


# -------------------------------------------------------------------------------- torch reference
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # triton.cdiv is a jit function: ~20 us a call from Python


_SCRATCH: dict = {}


def _scratch(name: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reused 1-D work buffer (grown, never shrunk) for what one call reads and drops: fresh large
    allocations page-fault on every call on CPU. Not for anything a call returns."""
    key = (name, dtype, torch.device(device))
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < numel:
        buf = _SCRATCH[key] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel]


def decode_ref(q: torch.Tensor, kv_pool: torch.Tensor, blocks: torch.Tensor, pages: torch.Tensor,
               seq_lens: torch.Tensor, scale: float, lo: torch.Tensor | None = None,
               num_sinks: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of q [B, Hq, D] over, per (seq, KV head), the listed pages: blocks [B, H, W] physical
    ids and pages [B, H, W] their logical indices (-1: skip). Tokens at positions < lo are dropped
    unless < num_sinks (both [B, H]). Rows with nothing to attend give 0. fp32 math throughout.

    decode_oracle's result, computed in cache-sized pieces (see _RefPlan): per block of rows (seq, KV
    head), K is gathered chunk by chunk into one reused buffer and multiplied into the block's scores,
    then the softmax, then V is read the same way (in place by embedding_bag for fp32 pools).
    Gathering everything at once is several times slower on CPU: page faults on fresh memory and a
    DRAM round trip for every gathered byte. Small problems go to decode_oracle (fewer ops).
    """
    num_seqs, num_heads, head_dim = q.shape
    rows, group = num_seqs * blocks.shape[1], num_heads // blocks.shape[1]
    if rows * blocks.shape[2] * PAGE_SIZE * head_dim * 4 <= REF_ONE_SHOT_BYTES:
        return decode_oracle(q, kv_pool, blocks, pages, seq_lens, scale, lo, num_sinks)
    ids, ok = _visible_slots(kv_pool.shape[1], blocks, pages, seq_lens, lo, num_sinks)
    out = torch.zeros(rows, group, head_dim, device=q.device)
    if rows and ids.shape[1]:
        qf = q.float().view(rows, group, head_dim) * scale
        plan = _RefPlan(kv_pool, rows, ids.shape[1], group)
        for r0 in range(0, rows, plan.block_rows):
            r1 = min(rows, r0 + plan.block_rows)
            out[r0:r1] = _attend_rows(qf[r0:r1], ids[r0:r1], ok[r0:r1], plan)
    return out.view(num_seqs, num_heads, head_dim).to(q.dtype)


def dense_decode_ref(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor, seq_lens: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """decode_ref over every page of each (seq, KV head)'s block table in order (no window): the same
    result in about half the ops, which is what a short context's decode costs on CPU.

    With every page listed, a sequence's only invisible tokens are those at positions >= its length,
    so the masks come from the lengths on the host and nothing is re-sorted. Cases this does not cover
    (a missing block where a sequence has tokens, an empty sequence, a non-fp32 pool, a tiny problem)
    take decode_ref.
    """
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads, num_pages = block_tables.shape[1:]
    lens = seq_lens.tolist()
    width = min(num_pages, _cdiv(max(lens, default=0), PAGE_SIZE))
    rows, group = num_seqs * num_kv_heads, num_heads // num_kv_heads
    blocks = block_tables[:, :, :width]
    k_bytes = rows * width * PAGE_SIZE * head_dim * 4
    fits = (kv_pool.dtype == torch.float32 and width > 0 and min(lens) > 0
            and (k_bytes > REF_ONE_SHOT_BYTES or k_bytes <= DENSE_ONE_SHOT_BYTES)
            and _has_blocks(blocks, lens, kv_pool))
    if not fits:
        pages = torch.arange(num_pages, device=q.device).expand(num_seqs, num_kv_heads, -1)
        return decode_ref(q, kv_pool, block_tables, pages, seq_lens, scale)
    ids = blocks.reshape(rows, width).clamp(min=0)  # -1 only past a sequence's length: masked below
    row_lens = [n for n in lens for _ in range(num_kv_heads)]
    qf = q.float().view(rows, group, head_dim) * scale
    if k_bytes <= DENSE_ONE_SHOT_BYTES:
        return _attend_prefix_one_shot(qf, ids, row_lens, kv_pool).view(num_seqs, num_heads, head_dim).to(q.dtype)
    plan = _RefPlan(kv_pool, rows, width, group)
    out = torch.empty(rows, group, head_dim, device=q.device)
    for r0 in range(0, rows, plan.block_rows):
        r1 = min(rows, r0 + plan.block_rows)
        out[r0:r1] = _attend_prefix(qf[r0:r1], ids[r0:r1], row_lens[r0:r1], plan)
    return out.view(num_seqs, num_heads, head_dim).to(q.dtype)


def _has_blocks(blocks: torch.Tensor, lens: list[int], kv_pool: torch.Tensor) -> bool:
    """Whether every page holding a token of its sequence has a block in the pool (one check if the
    lengths are equal; pages past a shorter sequence's end may be -1)."""
    if min(lens) == max(lens):
        low, high = torch.aminmax(blocks)
    else:
        need = torch.arange(blocks.shape[2], device=blocks.device) < \
            torch.tensor([_cdiv(n, PAGE_SIZE) for n in lens], device=blocks.device)[:, None, None]
        low, high = torch.aminmax(torch.where(need, blocks, 0))
    return bool(low >= 0) and bool(high < kv_pool.shape[1])


def _attend_prefix_one_shot(q: torch.Tensor, ids: torch.Tensor, lens: list[int], kv_pool: torch.Tensor
                            ) -> torch.Tensor:
    """[n, G, D]: _attend_prefix for a small problem: every row's K and V gathered at once (a cache-sized
    copy), scores and output in one bmm each; slots at or past a row's length masked (V too: 0 * NaN)."""
    n, width = ids.shape
    head_dim = q.shape[2]
    flat = ids.reshape(-1)
    tokens = width * PAGE_SIZE
    k = kv_pool[0].index_select(0, flat).view(n, tokens, head_dim)
    s = torch.bmm(q, k.transpose(1, 2))
    masked = None
    if min(lens) < tokens:
        masked = torch.arange(tokens, device=q.device) >= torch.tensor(lens, device=q.device)[:, None]
        s.masked_fill_(masked[:, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    v = kv_pool[1].index_select(0, flat).view(n, tokens, head_dim)
    if masked is not None:
        v.masked_fill_(masked[..., None], 0.0)
    return torch.bmm(p, v)


def _attend_prefix(q: torch.Tensor, ids: torch.Tensor, lens: list[int], plan: _RefPlan) -> torch.Tensor:
    """[n, G, D]: attention of q [n, G, D] (scaled) over the first lens[r] tokens of row r's pages ids
    [n, W] (block ids, each row's first page valid); _attend_rows' tiling, with masks from lens."""
    n, width = ids.shape
    group, head_dim = q.shape[1:]
    sub = min(plan.sub_rows, n)
    subs, chunks = _cdiv(n, sub), _cdiv(width, plan.cols)
    pad_rows, pad_cols = subs * sub - n, chunks * plan.cols - width
    if pad_rows or pad_cols:  # padded rows attend block 0's first token (finite or not, they are dropped)
        ids = torch.nn.functional.pad(ids, (0, pad_cols, 0, pad_rows))
        q = torch.nn.functional.pad(q, (0, 0, 0, 0, 0, pad_rows))
        lens = lens + [1] * pad_rows
    tokens = plan.cols * PAGE_SIZE
    ids = ids.view(subs, sub, chunks, plan.cols).transpose(1, 2).reshape(subs * chunks, -1)
    q = q.view(subs, sub, group, head_dim)
    s = _scratch("scores", subs * chunks * sub * group * tokens, torch.float32, q.device) \
        .view(subs, chunks, sub, group, tokens)
    gather = plan.gatherer(sub)
    for i, (chunk_ids, chunk_s) in enumerate(zip(ids.unbind(0), s.flatten(0, 1).unbind(0))):
        torch.bmm(q[i // chunks], gather(plan.keys, chunk_ids).transpose(1, 2), out=chunk_s)
    masked = None
    if min(lens) < chunks * tokens:  # [subs, chunks, sub, 1, T]: slots at or past the row's length
        pos = torch.arange(chunks * tokens, device=q.device)
        masked = (pos >= torch.tensor(lens, device=q.device)[:, None]).view(subs, sub, chunks, 1, tokens) \
            .transpose(1, 2)
        s.masked_fill_(masked, float("-inf"))
    s.sub_(s.amax((1, 4), keepdim=True)).exp_()  # every row sees its first token: no all -inf row
    denom = s.sum((1, 4))[..., None]
    index_dtype = torch.int32 if plan.values.shape[0] * PAGE_SIZE < 2**31 else torch.int64
    slots = (ids.to(index_dtype).view(subs, chunks, sub, 1, -1, 1) * PAGE_SIZE
             + torch.arange(PAGE_SIZE, dtype=index_dtype, device=q.device)).view(subs, chunks, sub, 1, tokens)
    if masked is not None:  # p is 0 there, but 0 * NaN = NaN: read the row's first token instead
        slots = torch.where(masked, slots[:, :1, :, :, :1], slots)
    slots = slots.expand(subs, chunks, sub, group, tokens).reshape(-1)
    offsets = torch.arange(0, slots.numel(), tokens, dtype=index_dtype, device=q.device)
    bags = torch.nn.functional.embedding_bag(slots, plan.values.view(-1, head_dim), offsets, mode="sum",
                                             per_sample_weights=s.view(-1))
    out = bags.view(subs, chunks, sub, group, -1).sum(1) if chunks > 1 else bags.view(subs, sub, group, -1)
    return (out / denom).view(-1, group, head_dim)[:n]


def decode_oracle(q: torch.Tensor, kv_pool: torch.Tensor, blocks: torch.Tensor, pages: torch.Tensor,
                  seq_lens: torch.Tensor, scale: float, lo: torch.Tensor | None = None,
                  num_sinks: torch.Tensor | None = None) -> torch.Tensor:
    """decode_ref in one shot (every listed page gathered at once): the test oracle for decode_ref."""
    num_seqs, num_heads, head_dim = q.shape
    rows, group = num_seqs * blocks.shape[1], num_heads // blocks.shape[1]
    ok, ids = _slot_mask(kv_pool.shape[1], blocks, pages, seq_lens, lo, num_sinks)
    tokens = ids.shape[2] * PAGE_SIZE
    ok, ids = ok.view(rows, tokens), ids.view(rows, tokens // PAGE_SIZE)
    k = kv_pool[0][ids].float().view(rows, tokens, head_dim)
    v = kv_pool[1][ids].float().view(rows, tokens, head_dim).masked_fill(~ok[..., None], 0.0)  # 0 * NaN = NaN
    s = torch.bmm(q.float().view(rows, group, head_dim) * scale, k.transpose(1, 2))
    p = s.masked_fill(~ok[:, None], float("-inf")).softmax(-1).nan_to_num(0.0)  # rows with nothing: 0
    return torch.bmm(p, v).view(num_seqs, num_heads, head_dim).to(q.dtype)


def _slot_mask(num_blocks, blocks, pages, seq_lens, lo, num_sinks) -> tuple[torch.Tensor, torch.Tensor]:
    """(ok bool [B, H, W, 16]: token visible, ids [B, H, W]: block id, 0 where there is none)."""
    blocks = blocks.long()
    has_block = (pages >= 0) & (blocks >= 0) & (blocks < num_blocks)
    pos = pages.long()[..., None] * PAGE_SIZE + torch.arange(PAGE_SIZE, device=blocks.device)
    ok = has_block[..., None] & (pos < seq_lens.long()[:, None, None, None])
    if lo is not None:
        ok &= (pos >= lo.long()[..., None, None]) | (pos < num_sinks.long()[..., None, None])
    return ok, torch.where(has_block, blocks, 0)


def _visible_slots(num_blocks, blocks, pages, seq_lens, lo, num_sinks) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [rows, W'], ok [rows, W', 16]): each row's pages holding a visible token, moved to the
    front (stable) and cut to the longest row, so invisible pages are never read."""
    ok, ids = _slot_mask(num_blocks, blocks, pages, seq_lens, lo, num_sinks)
    rows, width = ids.shape[0] * ids.shape[1], ids.shape[2]
    ok, ids = ok.view(rows, width, PAGE_SIZE), ids.view(rows, width)
    seen = ok.any(2)
    if rows == 0 or bool(seen.all()):
        return ids, ok
    order = torch.sort((~seen).to(torch.int8), dim=1, stable=True).indices[:, :int(seen.sum(1).max())]
    return ids.gather(1, order), ok.gather(1, order[..., None].expand(-1, -1, PAGE_SIZE))


class _RefPlan:
    """How decode_ref cuts its work, and the buffers it reuses.

    A chunk, what one gather fetches, is `sub_rows` rows x `cols` pages, about REF_CHUNK_BYTES of
    fp32 K (at least MIN_CHUNK_COLS pages a row, so each bmm is big enough to run fast). A block is
    `block_rows` rows (a multiple of sub_rows) whose scores take about REF_SCORE_BYTES; the softmax
    and the V pass run once per block, so narrow rows (sparse lists) do not pay them row by row.
    """

    def __init__(self, kv_pool: torch.Tensor, rows: int, width: int, group: int):
        head_dim, device = kv_pool.shape[3], kv_pool.device
        chunk_pages = max(1, REF_CHUNK_BYTES // (PAGE_SIZE * head_dim * 4))
        row_score_bytes = group * width * PAGE_SIZE * 4
        if width <= chunk_pages:
            self.sub_rows, self.cols = min(rows, chunk_pages // width), width
        else:
            self.sub_rows = max(1, min(rows, REF_SCORE_BYTES // row_score_bytes, chunk_pages // MIN_CHUNK_COLS))
            self.cols = _cdiv(width, _cdiv(width, chunk_pages // self.sub_rows))  # even chunks
        subs = REF_SCORE_BYTES // (row_score_bytes * self.sub_rows)
        self.block_rows = self.sub_rows * max(1, min(_cdiv(rows, self.sub_rows), subs))
        self.keys, self.values = kv_pool.unbind(0)
        chunk = self.sub_rows * self.cols * PAGE_SIZE * head_dim
        self.gathered = _scratch("gathered", chunk, kv_pool.dtype, device)
        self.upcast = None if kv_pool.dtype == torch.float32 else torch.empty(chunk, device=device)

    def gatherer(self, sub_rows: int):
        """A function (pool, ids [sub_rows * cols]) -> fp32 [sub_rows, cols * 16, D]: pool's pages
        `ids`, written to a buffer that the function's next call overwrites."""
        head_dim = self.keys.shape[2]
        n = sub_rows * self.cols * PAGE_SIZE * head_dim
        pages = self.gathered[:n].view(-1, PAGE_SIZE, head_dim)
        tile = pages.view(sub_rows, -1, head_dim)
        upcast = None if self.upcast is None else self.upcast[:n].view_as(tile)

        def gather(pool: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            torch.index_select(pool, 0, ids, out=pages)
            return tile if upcast is None else upcast.copy_(tile)
        return gather


def _attend_rows(q: torch.Tensor, ids: torch.Tensor, ok: torch.Tensor, plan: _RefPlan) -> torch.Tensor:
    """[n, G, D]: attention of q [n, G, D] (scaled) over pages ids [n, W] with token mask ok [n, W, 16]."""
    n, width = ids.shape
    group, head_dim = q.shape[1:]
    sub = min(plan.sub_rows, n)
    subs, chunks = _cdiv(n, sub), _cdiv(width, plan.cols)
    pad_rows, pad_cols = subs * sub - n, chunks * plan.cols - width
    if pad_rows or pad_cols:  # padding: masked copies of block 0
        ids = torch.nn.functional.pad(ids, (0, pad_cols, 0, pad_rows))
        ok = torch.nn.functional.pad(ok, (0, 0, 0, pad_cols, 0, pad_rows))
        q = torch.nn.functional.pad(q, (0, 0, 0, 0, 0, pad_rows))
    tokens = plan.cols * PAGE_SIZE
    # chunk (i, c) = rows [i * sub, (i + 1) * sub) x pages [c * cols, (c + 1) * cols)
    ids = ids.view(subs, sub, chunks, plan.cols).transpose(1, 2).reshape(subs * chunks, -1)
    ok = ok.view(subs, sub, chunks, 1, tokens).transpose(1, 2)  # [subs, chunks, sub, 1, T]
    q = q.view(subs, sub, group, head_dim)
    full = ok.flatten(2).all(2).flatten().tolist()
    s = torch.empty(subs, chunks, sub, group, tokens, device=q.device)
    gather = plan.gatherer(sub)
    for i, (chunk_ids, chunk_s) in enumerate(zip(ids.unbind(0), s.flatten(0, 1).unbind(0))):
        torch.bmm(q[i // chunks], gather(plan.keys, chunk_ids).transpose(1, 2), out=chunk_s)
    if not all(full):
        s.masked_fill_(~ok, float("-inf"))  # also hides NaN in slots past the end
    m = s.amax((1, 4), keepdim=True)
    s.sub_(m.masked_fill_(m == float("-inf"), 0.0)).exp_()  # a row with nothing visible: all 0
    denom = s.sum((1, 4))[..., None]  # [subs, sub, G, 1]
    if plan.upcast is None:
        out = _weighted_values(s, ids, None if all(full) else ok, plan.values)
    else:
        out = torch.zeros(subs, sub, group, head_dim, device=q.device)
        for i, (chunk_ids, chunk_s) in enumerate(zip(ids.unbind(0), s.flatten(0, 1).unbind(0))):
            v = gather(plan.values, chunk_ids)
            if not full[i]:
                v.masked_fill_(~ok.flatten(0, 1)[i].transpose(1, 2), 0.0)  # skipped slots may hold NaN
            out[i // chunks].baddbmm_(chunk_s, v)
    out /= torch.where(denom > 0, denom, 1.0)
    return out.view(-1, group, head_dim)[:n]


def _weighted_values(p: torch.Tensor, ids: torch.Tensor, ok: torch.Tensor | None,
                     values: torch.Tensor) -> torch.Tensor:
    """[subs, sub, G, D]: sum over slots of p [subs, chunks, sub, G, T] x V, with V read in place by
    embedding_bag (no copy, and it prefetches rows). One bag per (chunk, row, head), in that order,
    so a chunk's V rows come from DRAM once and from L2 for the other heads. ok: None if all visible."""
    subs, chunks, sub, group, tokens = p.shape
    index_dtype = torch.int32 if values.shape[0] * PAGE_SIZE < 2**31 else torch.int64
    slots = ids.to(index_dtype).view(subs, chunks, sub, 1, -1, 1) * PAGE_SIZE + torch.arange(
        PAGE_SIZE, dtype=index_dtype, device=ids.device)
    slots = slots.view(subs, chunks, sub, 1, tokens)
    if ok is not None:
        # p is 0 on skipped slots but 0 * NaN = NaN: read the row's first visible slot there instead
        # (a row with none gets zeroed below).
        first = slots[:, :1].gather(4, ok[:, :1].int().argmax(4, keepdim=True))  # [subs, 1, sub, 1, 1]
        slots = torch.where(ok, slots, first)
    slots = slots.expand(subs, chunks, sub, group, tokens).reshape(-1)
    offsets = torch.arange(0, slots.numel(), tokens, dtype=index_dtype, device=ids.device)
    bags = torch.nn.functional.embedding_bag(slots, values.view(-1, values.shape[-1]), offsets, mode="sum",
                                             per_sample_weights=p.view(-1))
    out = bags.view(subs, chunks, sub, group, -1).sum(1) if chunks > 1 else bags.view(subs, sub, group, -1)
    return out if ok is None else out.masked_fill_(~ok.any(4).any(1)[..., None], 0.0)  # rows with nothing
