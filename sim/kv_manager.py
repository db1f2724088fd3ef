"""KV-policy page accounting inside a simulated worker: head-pages on device and host, MinMax, PCIe copies.

One KVManager per worker drives one RequestKV per request (tessera/kvcache/request_kv.py) and turns
its StepSummaries into simulator effects:
- device pages: the worker's pool counts head-pages (kv_pool.HeadPagePool); after each event a
  request's `num_blocks` is reconciled with RequestKV.device_pages. Pages leaving the device go back
  only once the request's D2H copies in flight have landed (prompt pages of stable heads: after the
  first decode AND the prompt offload).
- MinMax metadata: as in the authors' code, a region reserved out of the GPU KV budget with
  share = MinMax / (KV + MinMax) of an average request (avg_num_tokens_per_req tokens; flexicache.md
  §2.1). Each admitted request reserves its peak MinMax (all pages of prompt + output) in that region;
  admission waits while it does not fit (a second counter, not head-pages).
- host memory: a pinned host KV pool (host_kv_gib, 180 GB on the paper's testbed); each admitted
  request reserves its peak host pages; admission waits while they do not fit, a request that can
  never fit is rejected with a message naming kvpolicy.host_kv_gib.
- PCIe: D2H copies (prompt offload, pages that fill) and H2D reloads (promoted pages at a rerank)
  are queued on the worker's host Link (FIFO per direction, shared by all requests). A reloading
  request leaves `running` until its copy lands, keeping its pages, then rejoins in its admission order
  (the worker takes landings at its next step: sim/kv_reloads.py). A D2H copy has no event unless pages
  the request gives back wait for it.
- decode cost: decode_kv_tokens += attended tokens per head (sparse attention over the selected
  pages; tokens read through page lists count 1/sparse_kernel_efficiency times, the gathered-page
  kernel being slower per byte than the dense one), extra_hbm_bytes += MinMax bytes the scoring pass
  scans; prefill stays dense.

Ignores: SM contention of the copy kernels with compute, the cost of the top-K selection itself
(see experiments/flexicache/rerank_cost.py), and tensor parallelism beyond splitting bytes evenly
over the replica's GPUs (the first GPU's link carries 1/shards of every copy, the others mirror it;
shards = min(tp, KV heads): with more GPUs than KV heads each head is replicated and so are its copies).
"""
from __future__ import annotations

import math
from itertools import count
from typing import TYPE_CHECKING

import numpy as np
import simpy

from tessera.interface import BatchShape, ScheduledBatch
from tessera.kvcache.head_model import HeadModel
from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies.base import PlannedPolicy
from tessera.kvcache.rerank_batch import draw_ranks
from tessera.kvcache.request_kv import RequestKV
from tessera.kvcache.summary import StepSummary
from tessera.sim.admission import KV_FIX
from tessera.sim.kv_copies import KVCopies
from tessera.sim.kv_pool import HeadPagePool
from tessera.sim.kv_reloads import KVReloads
from tessera.sim.kv_setup import KVSimConfig
from tessera.sim.link import Link

if TYPE_CHECKING:
    from tessera.sim.worker import Worker

GIB = 2**30


def minmax_share(plan: HeadPlan, avg_tokens: int) -> float:
    """MinMax / (KV + MinMax) of an average request under `plan` (authors' pool split, flexicache.md §2.1)."""
    if not plan.keeps_minmax:
        return 0.0
    g = plan.geometry
    kept = {HeadMode.FULL: avg_tokens, HeadMode.RESIDENT_TOPK: avg_tokens,
            HeadMode.OFFLOAD: min(avg_tokens, plan.topk_pages * g.page_tokens),
            HeadMode.WINDOW: min(avg_tokens, (plan.sink_pages + plan.window_pages) * g.page_tokens)}
    kv = sum(plan.count(mode) * tokens * g.page_bytes / g.page_tokens for mode, tokens in kept.items())
    mm = g.num_heads_total * avg_tokens / g.page_tokens * g.minmax_bytes_per_page
    return mm / (kv + mm)


class _SeqKV:
    """The manager's per-request state: its RequestKV, copies in flight and counters for the results."""

    __slots__ = ("rk", "epoch", "d2h_end", "d2h_eid", "shrink_pending", "step", "reserved", "host_bytes",
                 "minmax_reserved", "host_reserved", "h2d_bytes", "d2h_bytes", "stall_s", "num_reloads",
                 "promoted_pages", "stalled_at", "minmax_bytes")

    def __init__(self, rk: RequestKV) -> None:
        self.rk = rk
        self.epoch = 0
        self.d2h_end = 0.0  # the last D2H copy's end time and landing place (copies land in start order)
        self.d2h_eid = 0
        self.shrink_pending = False
        self.step: StepSummary | None = None
        self.reserved = False
        self.host_bytes = 0
        self.minmax_reserved = 0
        self.host_reserved = 0
        self.h2d_bytes = 0
        self.d2h_bytes = 0
        self.stall_s = 0.0
        self.num_reloads = 0
        self.promoted_pages = 0
        self.stalled_at = math.nan
        self.minmax_bytes = 0


def _running_order_of_fill(fill: tuple) -> int:
    return fill[0].running_order


class KVManager(KVCopies, KVReloads):
    def __init__(self, env: simpy.Environment, policy: PlannedPolicy, kv_bytes_per_gpu: float, page_tokens: int,
                 link: Link | None, sim: KVSimConfig = KVSimConfig(), head_model: HeadModel | None = None,
                 tp: int = 1) -> None:
        """kv_bytes_per_gpu: each of the replica's tp GPUs' KV budget (MinMax region included)."""
        plan = policy.plan
        g = plan.geometry
        if page_tokens != g.page_tokens:
            raise ValueError(f"engine.block_size={page_tokens} must equal the KV policy's page_tokens="
                             f"{g.page_tokens}: set one to the other")
        offloads = plan.count(HeadMode.OFFLOAD) > 0
        if offloads and link is None:
            raise ValueError(f"kvpolicy {plan.policy} offloads pages to host but the cluster has no host link")
        self.env = env
        self.policy = policy
        self.plan = plan
        self.geometry = g
        self.sim = sim
        self.link = link
        self.tp = tp
        self.shards = min(tp, g.num_kv_heads)  # GPUs holding distinct KV heads (the rest replicate them)
        kv_bytes = max(kv_bytes_per_gpu, 0.0) * self.shards  # replicated heads add no distinct capacity
        self._sparse_surcharge = 1.0 / sim.sparse_kernel_efficiency - 1.0
        self.head_model = head_model
        self.num_heads = g.num_heads_total
        self.num_offload_heads = plan.count(HeadMode.OFFLOAD)
        self._max_interval = int(plan.rerank_interval.max(initial=0))
        self.minmax_share = minmax_share(plan, sim.avg_num_tokens_per_req) if sim.minmax_region else 0.0
        token_page_bytes = g.page_bytes * self.num_heads  # one 16-token block of every head
        self.minmax_capacity_bytes = kv_bytes * self.minmax_share if plan.keeps_minmax else 0.0
        num_pages = self.num_heads * int(max(kv_bytes - self.minmax_capacity_bytes, 0.0) // token_page_bytes)
        self.host_capacity_bytes = sim.host_kv_gib * GIB
        self.pool = HeadPagePool(num_pages, page_tokens, self.num_heads, self)
        self.worker: Worker | None = None
        self._states: dict = {}  # SeqState -> _SeqKV
        self._order = count()
        self.num_stalled = 0
        self._landings: list = []  # reloads in flight: (end, landing event id, request); sim/kv_reloads.py
        self._armed = None  # the landing an idle worker's event waits for
        self._deferred = 0  # requests whose page returns wait for a D2H copy
        self.minmax_used_bytes = 0  # reserved
        self.host_used_bytes = 0  # reserved
        self.host_bytes = 0  # actually written
        self.peak_host_bytes = 0
        self.peak_minmax_bytes = 0
        self.minmax_bytes = 0  # actually held
        self.num_reloads = 0
        self.num_prefills = 0
        self._rank_rng = None  # sampled mode: draws the batch's next reranks ahead, all requests at once

    # --------------------------------------------------------------------------------- admission
    def _state(self, seq) -> _SeqKV:
        st = self._states.get(seq)
        if st is None:
            source = self.head_model.behaviour(seq.request_id) if self.head_model is not None else None
            rk = self.policy.new_request(seq.request_id, seq.num_prompt_tokens, source, track_pages=False)
            if self.sim.rerank_mode == "sampled" and source is not None:
                rk.use_sampled_reranks()
            elif self.sim.rerank_mode == "moments" and source is not None:
                max_pages = -(-self.worker.spec.model.max_position // self.geometry.page_tokens)
                rk.use_moment_reranks(max_pages, self.head_model.seed)
            st = self._states[seq] = _SeqKV(rk)
        return st

    def _peak_needs(self, seq) -> tuple[int, int]:
        """(MinMax bytes, host bytes) of a request at its longest."""
        g = self.geometry
        full_pages = (seq.num_prompt_tokens + seq.max_output_tokens) // g.page_tokens
        minmax = self.num_heads * full_pages * g.minmax_bytes_per_page if self.plan.keeps_minmax else 0
        return minmax, self.num_offload_heads * full_pages * g.page_bytes

    def peak_device_pages(self, seq) -> int:
        """Most head-pages the request holds: the whole prompt (+ first token) on every head right after
        prefill, or its steady state at full length with a rerank interval of tail."""
        from tessera.kvcache.memory_model import device_pages

        g, plan = self.geometry, self.plan
        total = seq.num_prompt_tokens + seq.max_output_tokens - 1
        interval = self._max_interval
        prefill = self.num_heads * g.num_pages(seq.num_prompt_tokens + 1)
        return max(min(prefill, self.num_heads * g.num_pages(total)),
                   device_pages(plan, total, tail_tokens=(interval + 1) * g.page_tokens))

    def rejection(self, seq, max_admissible_pages: int) -> str | None:
        """Why the request can never run on this worker, or None."""
        pages = self.peak_device_pages(seq)
        if pages > max_admissible_pages:
            return (f"rejected: needs {pages} KV head-pages, the pool admits at most {max_admissible_pages}; "
                    f"{KV_FIX}")
        minmax, host = self._peak_needs(seq)
        if minmax > self.minmax_capacity_bytes and self.plan.keeps_minmax and self.minmax_share > 0:
            return (f"rejected: needs {minmax / GIB:.2f} GiB of MinMax metadata, the region holds "
                    f"{self.minmax_capacity_bytes / GIB:.2f} GiB; raise kvpolicy.avg_num_tokens_per_req or set "
                    "kvpolicy.minmax_region=false")
        if host > self.host_capacity_bytes:
            return (f"rejected: needs {host / GIB:.2f} GiB of host KV memory, kvpolicy.host_kv_gib="
                    f"{self.sim.host_kv_gib} holds less; raise kvpolicy.host_kv_gib")
        return None

    def reserve(self, seq) -> bool:
        st = self._state(seq)
        if st.reserved:
            return True
        minmax, host = self._peak_needs(seq)
        if self.minmax_share > 0 and self.minmax_used_bytes + minmax > self.minmax_capacity_bytes:
            return False
        if self.host_used_bytes + host > self.host_capacity_bytes:
            return False
        self.minmax_used_bytes += minmax
        self.host_used_bytes += host
        st.minmax_reserved, st.host_reserved, st.reserved = minmax, host, True
        return True

    def unreserve(self, seq) -> None:
        st = self._states[seq]
        if st.reserved:
            self.minmax_used_bytes -= st.minmax_reserved
            self.host_used_bytes -= st.host_reserved
            st.minmax_reserved = st.host_reserved = 0
            st.reserved = False

    def on_release(self, seq) -> None:
        """The pool freed all of the request's pages: it finished or was preempted (recompute)."""
        st = self._states[seq]
        st.rk.on_finish() if seq.num_generated >= seq.max_output_tokens else st.rk.on_preempt()
        st.epoch += 1
        if st.shrink_pending:
            self._deferred -= 1
        st.d2h_end, st.d2h_eid = 0.0, 0
        st.shrink_pending = False
        st.step = None
        self._set_host(st, 0, 0)
        self.unreserve(seq)

    # ------------------------------------------------------------------------------- per iteration
    def batch_shape(self, batch: ScheduledBatch, shape: BatchShape, decode_seqs: int = 0, attended: int = 0,
                    sparse: int = 0, scanned: int = 0, decoding: list | None = None) -> BatchShape:
        """The iteration's cost counters; runs on_decode_step for every decoding request (before the step).
        decode_seqs, attended, sparse, scanned: what decodes outside the batch add (a KV decode cohort's members);
        decoding: every request decoding this step in batch order, members included (sampled mode draws their
        ranks ahead with the batch's), default batch.seqs. Attended and sparse tokens are summed over heads as
        integers and divided once, so the shape's float does not depend on how the batch's requests were grouped."""
        prefill_tokens = prefill_seqs = 0
        prefill_pairs = 0.0
        drawn = self.sim.rerank_mode != "sampled"
        known = self._states.get
        for seq, n in zip(batch.seqs, batch.num_scheduled_tokens):
            st = known(seq) or self._state(seq)
            rk = st.rk
            if rk.phase == "decoding":
                if not drawn and rk.next_rank_step == rk.decode_step + 1 and not rk.has_pending_rank:
                    drawn = self._draw_ranks_ahead(batch.seqs if decoding is None else decoding)
                s = rk.on_decode_step()
                st.step = s
                decode_seqs += 1
                attended += s.attended_tokens
                sparse += s.sparse_tokens
                scanned += s.minmax_bytes_scanned
            else:
                computed = seq.num_computed_tokens
                if computed == 0:
                    seq.running_order = next(self._order)  # admitted now: FCFS appends it to `running`
                prefill_tokens += n
                prefill_seqs += 1
                prefill_pairs += n * computed + n * (n + 1) / 2
        shape.prefill_tokens = prefill_tokens
        shape.prefill_seqs = prefill_seqs
        shape.prefill_attn_pairs = prefill_pairs
        shape.decode_seqs = decode_seqs
        # the cost reads sparse pages at the sparse kernels' efficiency; the records count the tokens read
        shape.decode_kv_tokens = (attended + sparse * self._sparse_surcharge) / self.num_heads
        shape.decode_kv_surcharge = sparse * self._sparse_surcharge / self.num_heads
        shape.decode_max_context = 0  # not tracked: graph_max_context is refused with a KV policy
        shape.extra_hbm_bytes = float(scanned)
        return shape

    def _draw_ranks_ahead(self, seqs: list) -> bool:
        """Draw the next rerank of every decoding request of the batch (`seqs`, in batch order) that has none drawn
        yet, in one vectorised draw (tessera/kvcache/rerank_batch.py): a request due now triggers it, the others'
        ranks wait for their steps, so the batch's reranks are drawn about once per rerank interval instead of once
        per request. A request's job does not change over its quiet steps (its tokens and decode step advance
        together), so a decode cohort's members, stepped or not, get the job they would get stepped."""
        jobs, rks = [], []
        for seq in seqs:
            rk = self._state(seq).rk
            job = rk.next_rank_job() if rk.phase == "decoding" else None
            if job is not None:
                jobs.append(job)
                rks.append(rk)
        if jobs:
            if self._rank_rng is None:
                self._rank_rng = np.random.default_rng([self.head_model.seed, 3, self.worker.worker_id])
            for rk, totals in zip(rks, draw_ranks(self._rank_rng, jobs)):
                rk.set_pending_rank(totals)
        return True

    def after_step(self, batch: ScheduledBatch, fills: list | None = None) -> list:
        """Apply the step's page events (before token counters advance); returns requests to stall. fills: (request,
        D2H bytes, host KV bytes, MinMax bytes) of a KV decode cohort's members that filled a page this step
        (sim/kv_cohort.py take_fills), taken with the batch's in running order (the order copies queue in)."""
        stall = []
        if fills:
            fills.sort(key=_running_order_of_fill)
            pending = iter(fills)
            fill = next(pending)
        else:
            fill = None
        for seq, n in zip(batch.seqs, batch.num_scheduled_tokens):
            while fill is not None and fill[0].running_order < seq.running_order:
                self._take_fill(*fill)
                fill = next(pending, None)
            st = self._states[seq]
            samples = seq.num_computed_tokens + n == seq.num_tokens
            s, st.step = st.step, None
            if s is None:
                if not samples:
                    continue  # a prefill chunk that does not finish the prompt
                s = st.rk.on_prefill_done(seq.num_computed_tokens + n)
                self.num_prefills += 1
            if samples and seq.num_generated + 1 >= seq.max_output_tokens:
                continue  # finishing: its pages go back with it, no copy is worth starting
            if (not s.d2h_bytes and not s.is_reloading and not s.num_promoted_pages and s.device_pages == seq.num_blocks
                    and s.host_kv_bytes == st.host_bytes and s.minmax_bytes == st.minmax_bytes):
                continue  # a quiet step (no page filled, no rank): nothing moves
            st.promoted_pages += s.num_promoted_pages
            self._set_host(st, s.host_kv_bytes, s.minmax_bytes)
            if s.d2h_bytes:
                st.d2h_bytes += s.d2h_bytes
                self._d2h(st, s.d2h_bytes)
            if s.is_reloading:
                st.h2d_bytes += s.h2d_bytes
                st.num_reloads += 1
                self.num_reloads += 1
                self.num_stalled += 1
                st.stalled_at = self.env.now
                stall.append(seq)
                self._reload(seq, st, s.h2d_bytes)
            self._reconcile(seq, st, s.device_pages)  # the summary's count is the request's now
        while fill is not None:
            self._take_fill(*fill)
            fill = next(pending, None)
        return stall

    def _take_fill(self, seq, d2h_bytes: int, host_bytes: int, minmax_bytes: int) -> None:
        """A cohort member's fill step: after_step for it (its device pages do not change, nothing else moves)."""
        st = self._states[seq]
        self._set_host(st, host_bytes, minmax_bytes)
        if d2h_bytes:
            st.d2h_bytes += d2h_bytes
            self._d2h(st, d2h_bytes)

    def has_pending(self) -> bool:
        """Something in flight will free pages or return a request (a worker with no batch waits for it)."""
        return self.num_stalled > 0 or self._deferred > 0

    # ------------------------------------------------------------------------------- accounting
    def _set_host(self, st: _SeqKV, host_bytes: int, minmax_bytes: int) -> None:
        """Host KV and MinMax bytes the request holds now (the reservations are their peaks)."""
        self.host_bytes += host_bytes - st.host_bytes
        st.host_bytes = host_bytes
        if self.host_bytes > self.peak_host_bytes:
            self.peak_host_bytes = self.host_bytes
        self.minmax_bytes += minmax_bytes - st.minmax_bytes
        st.minmax_bytes = minmax_bytes
        if self.minmax_bytes > self.peak_minmax_bytes:
            self.peak_minmax_bytes = self.minmax_bytes

    # ------------------------------------------------------------------------------------ results
    def request_stats(self) -> dict[int, dict]:
        return {seq.request_id: {"h2d_bytes": st.h2d_bytes, "d2h_bytes": st.d2h_bytes, "stall_s": st.stall_s,
                                 "num_reloads": st.num_reloads, "promoted_pages": st.promoted_pages}
                for seq, st in self._states.items()}

    def run_stats(self) -> dict:
        link = self.link
        return {
            "policy": self.plan.policy,
            "pool_head_pages": self.pool.num_blocks,
            "minmax_share": self.minmax_share,
            "minmax_region_bytes": self.minmax_capacity_bytes,
            # a policy without OFFLOAD heads keeps nothing on host: its host pool is not one
            "host_capacity_bytes": self.host_capacity_bytes if self.num_offload_heads else 0.0,
            "peak_host_kv_bytes": self.peak_host_bytes,
            "peak_minmax_bytes": self.peak_minmax_bytes,
            "pcie_h2d_bytes": link.bytes_moved["h2d"] * self.tp if link else 0.0,
            "pcie_d2h_bytes": link.bytes_moved["d2h"] * self.tp if link else 0.0,
            "pcie_h2d_busy_s": link.busy_s["h2d"] if link else 0.0,
            "pcie_d2h_busy_s": link.busy_s["d2h"] if link else 0.0,
            "num_reloads": self.num_reloads,
            "stall_s": sum(st.stall_s for st in self._states.values()),
        }
