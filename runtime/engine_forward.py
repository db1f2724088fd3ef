"""The engine's forward pass: a step's prefill chunks and decodes as one flattened token batch through the model
(prompt KV restored from the store, prefills recorded, decode inputs per KV head mode, top-K of due heads).
"""
from __future__ import annotations

import numpy as np
import torch

from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE, slot_mapping
from tessera.kvcache import HeadMode
from tessera.runtime.attention import DecodeLayerPlan, decode_attention, prefill_attention
from tessera.runtime.sequence import Sequence


class EngineForward:
    """Engine's forward-pass methods (a mixin of Engine): they use its model, cache, policy and prompt store."""

    def _forward(self, seqs: list[Sequence], nums: list[int], decoding: list[bool]):
        """Flattened batch through the model; returns (logits [S, vocab] of sampling rows, top-K per decode).

        Prefill chunks of prompts in the PromptKVStore are restored (stored K/V written, stored logits
        used) instead of computed; the chunks the model computes are recorded into the store.
        """
        model, cache = self.model, self.cache
        L, H = cache.num_layers, cache.num_kv_heads
        tokens, positions, rows, segments, sample_from = [], [], [], [], []
        restored = []  # (i, stored PromptKV, c, n)
        token_nums = list(nums)  # tokens each sequence puts through the model (0 when restored)
        start = 0
        for i, (s, n) in enumerate(zip(seqs, nums)):
            c = s.num_computed_tokens
            stored = self._stored_prefill(s, c, n, decoding[i])
            if stored is not None:
                restored.append((i, stored, c, n))
                token_nums[i] = 0
                self.num_restored_tokens += n
                if c + n == s.num_tokens:
                    sample_from.append(stored.logits)
                continue
            if c >= s.num_prompt_tokens:
                ids = s.output_token_ids[c - s.num_prompt_tokens:c - s.num_prompt_tokens + n]
            elif c + n > s.num_prompt_tokens:
                ids = s.token_ids[c:c + n]
            else:
                ids = s.prompt_token_ids[c:c + n]
            tokens.extend(ids)
            positions.extend(range(c, c + n))
            rows.extend([i] * n)
            if not decoding[i]:
                segments.append((i, start, n, c))
            if c + n == s.num_tokens:
                sample_from.append(start + n - 1)
            start += n
        P = max(-(-(s.num_computed_tokens + n) // PAGE_SIZE) for s, n in zip(seqs, nums))
        bt_np = np.full((len(seqs), L, H, P), -1, dtype=np.int32)
        for i, s in enumerate(seqs):
            w = min(P, s.tables.dev.shape[2])
            bt_np[i, :, :, :w] = s.tables.dev[:, :, :w]
        bt = self._upload(bt_np)
        tok_t = self._upload(tokens, np.int64)
        pos_t = self._upload(positions, np.int64)
        row_t = self._upload(rows, np.int64)
        # every layer's slots at once (one gather per step, not per layer): [L, N, H]
        slots_all = slot_mapping(bt.view(len(seqs), L * H, P), row_t, pos_t).view(-1, L, H).transpose(0, 1) \
            .contiguous() if tokens else None
        # CPU only (on CUDA a check would sync): numpy reads the host tensor in place, no transfer
        slots_valid = bool(tokens) and self.device.type == "cpu" and bool(slots_all.numpy().min() >= 0)
        # a batch of decodes only, one token per sequence in batch order: q, o and the tables need no gather
        only_decodes = all(decoding) and all(n == 1 for n in nums)
        full_dev, full_mm = self._newly_full(seqs, nums)
        dec = self._decode_inputs(seqs, token_nums, decoding, bt, P) if any(decoding) else None
        if restored:
            r_rows = self._upload(np.concatenate([np.full(n, i) for i, _, _, n in restored]), np.int64)
            r_pos = self._upload(np.concatenate([np.arange(c, c + n) for _, _, c, n in restored]), np.int64)
        recording = [] if self.prompt_kv is None else \
            [(seqs[i].prompt_token_ids, s0, T, c) for i, s0, T, c in segments if c + T <= seqs[i].num_prompt_tokens]
        rec_k = [[] for _ in recording]
        rec_v = [[] for _ in recording]

        h = model.embed(tok_t[None]) if tokens else None
        rope = model.rope(pos_t[None]) if tokens else None
        topk_dev: dict[int, torch.Tensor] = {}
        for l, layer in enumerate(model.layers):
            bt_l = bt[:, l]
            if restored:
                self._write_restored(l, restored, slot_mapping(bt_l, r_rows, r_pos))
            if h is None:
                if full_dev is not None:
                    cache.update_minmax(full_dev[l], full_mm[l])
                continue
            q, k, v = layer.qkv(h, rope)  # (1, Hq, N, D), (1, Hkv, N, D)
            cache.write(k[0].transpose(0, 1).contiguous(), v[0].transpose(0, 1).contiguous(), slots_all[l], slots_valid)
            for j, (_, s0, T, _) in enumerate(recording):
                rec_k[j].append(k[0, :, s0:s0 + T])
                rec_v[j].append(v[0, :, s0:s0 + T])
            if full_dev is not None:
                cache.update_minmax(full_dev[l], full_mm[l])
            o = torch.empty_like(q) if not only_decodes else None
            for i, s0, T, c in segments:
                blocks = bt_l[i, :, :-(-(c + T) // PAGE_SIZE)]
                o[:, :, s0:s0 + T] = prefill_attention(q[:, :, s0:s0 + T], k[:, :, s0:s0 + T], v[:, :, s0:s0 + T],
                                                       cache.kv, blocks, c, self.windows[l])
            if dec is not None:
                if only_decodes:
                    qd, btd = q[0].transpose(0, 1).contiguous(), bt_l  # [Bd, Hq, D]: a view of q
                else:
                    qd = q[0, :, dec["tok"]].transpose(0, 1).contiguous()
                    btd = bt_l[dec["rows"]].contiguous()
                plan = dec["plans"][l]
                topk = None
                if plan.needs_scores:
                    scores = dispatch.score_pages(qd, cache.minmax, dec["mm"][:, l], dec["lens"])
                    topk = dispatch.select_topk(scores, self.topk_pages)
                    if dec["due_layers"][l]:
                        topk_dev[l] = topk  # copied to the host once, after the last layer
                od = decode_attention(qd, cache.kv, btd, dec["lens"], plan, topk)
                if only_decodes:
                    o = od.transpose(0, 1)[None]
                else:
                    o[0, :, dec["tok"]] = od.transpose(0, 1)
            h = layer.finish(h, o)
        logits = self._sampling_logits(h, sample_from)
        if recording:
            self._record_prefills(recording, rec_k, rec_v, h, logits, sample_from)
        topk_np: dict[int, np.ndarray] = {}
        if topk_dev:  # one device->host copy for every due layer (same shape [Bd, Hkv, K])
            due = sorted(topk_dev)
            host = torch.stack([topk_dev[l] for l in due]).cpu().numpy()
            topk_np = {l: host[j] for j, l in enumerate(due)}
        topk_rows = self._due_topk(seqs, decoding, dec, topk_np) if dec is not None else {}
        return logits, topk_rows

    def _write_restored(self, layer: int, restored: list, slots: torch.Tensor) -> None:
        """Write the stored K/V of this step's restored prefill chunks (in batch order) into the pool."""
        k = torch.cat([p.k[layer][:, c:c + n] for _, p, c, n in restored], dim=1).transpose(0, 1)  # [N, Hkv, D]
        v = torch.cat([p.v[layer][:, c:c + n] for _, p, c, n in restored], dim=1).transpose(0, 1)
        dispatch.write_kv(self.cache.kv, k.contiguous(), v.contiguous(), slots)

    def _record_prefills(self, recording: list, rec_k: list, rec_v: list, h, logits, sample_from: list) -> None:
        """Hand the computed prompt chunks (per layer K/V) to the store, with the logits at a prompt's end."""
        logit_row = {src: j for j, src in enumerate(sample_from) if isinstance(src, int)}
        for j, (prompt, s0, T, c) in enumerate(recording):
            last, end = None, s0 + T - 1
            if c + T == len(prompt):
                last = logits[logit_row[end]] if end in logit_row else self.model.logits(h[:, end:end + 1])[0, 0]
            self.prompt_kv.record(prompt, c, rec_k[j], rec_v[j], last)

    def _stored_prefill(self, s: Sequence, c: int, n: int, decoding: bool):
        """The stored prefill of s when this step's chunk [c, c + n) lies inside its prompt, else None."""
        if self.prompt_kv is None or decoding or c + n > s.num_prompt_tokens:
            return None
        return self.prompt_kv.get(s.prompt_token_ids)

    def _sampling_logits(self, h, sample_from: list) -> torch.Tensor | None:
        """Logits [S, vocab] of the sampling rows: a row of h (int) or a stored prefill's logits (tensor)."""
        if not sample_from:
            return None
        at = [src for src in sample_from if isinstance(src, int)]
        computed = self.model.logits(h[:, self._upload(at, np.int64)])[0] if at else None
        if len(at) == len(sample_from):
            return computed
        rows, j = [], 0
        for src in sample_from:
            if isinstance(src, int):
                rows.append(computed[j])
                j += 1
            else:
                rows.append(src.to(self.device))
        return torch.stack(rows)

    def _newly_full(self, seqs, nums):
        """Device and MinMax block ids [L, X] of the pages every head fills this step (for update_minmax)."""
        if not self.cache.keeps_minmax:
            return None, None
        devs, mms = [], []
        for s, n in zip(seqs, nums):
            c = s.num_computed_tokens
            p0, p1 = c // PAGE_SIZE, (c + n) // PAGE_SIZE
            if p1 > p0:
                devs.append(s.tables.dev[:, :, p0:p1].reshape(self.cache.num_layers, -1))
                mms.append(s.tables.mm[:, :, p0:p1].reshape(self.cache.num_layers, -1))
        if not devs:
            return None, None
        dev_ids = np.concatenate(devs, axis=1)
        mm_ids = np.concatenate(mms, axis=1)
        assert (dev_ids >= 0).all() and (mm_ids >= 0).all(), "a page filled this step has no block"
        return self._upload(dev_ids), self._upload(mm_ids)

    def _decode_inputs(self, seqs, nums, decoding, bt, P) -> dict:
        """Per layer: which kernels run, static page lists and rows whose pages come from this step's scores."""
        L, H = self.cache.num_layers, self.cache.num_kv_heads
        mode, plan = self.mode, self.plan
        idx = [i for i, d in enumerate(decoding) if d]
        tok_index = np.cumsum([0] + nums)[:-1]
        dseqs = [seqs[i] for i in idx]
        Bd = len(dseqs)
        lens = np.array([s.num_computed_tokens + 1 for s in dseqs], dtype=np.int64)
        out = {"rows": self._upload(idx, np.int64),
               "tok": self._upload(tok_index[idx], np.int64),
               "lens": self._upload(lens, np.int32)}
        due_layers = np.zeros(L, dtype=bool)
        dynamic = np.zeros((Bd, L, H), dtype=bool)
        dynamic[:, mode == HeadMode.RESIDENT_TOPK] = True
        static = np.zeros((Bd, L, H, P), dtype=bool)
        pages = np.arange(P)
        off = mode == HeadMode.OFFLOAD
        win = mode == HeadMode.WINDOW
        for b, s in enumerate(dseqs):
            n = -(-int(lens[b]) // PAGE_SIZE)
            if win.any():
                keep = (pages < plan.sink_pages) | ((pages >= n - plan.window_pages) & (pages < n))
                static[b][win] = keep
            if off.any():
                if s.decoded_since_prefill:
                    static[b][off] = s.tables.dev[off][:, :P] >= 0 if s.tables.dev.shape[2] >= P else \
                        np.pad(s.tables.dev[off], ((0, 0), (0, P - s.tables.dev.shape[2])), constant_values=-1) >= 0
                else:
                    dynamic[b][off] = True  # first rank: this step's top-K is used at once
                layers, _ = s.rk.due_heads()
                due_layers[np.unique(layers)] = True
        width = int(static.sum(-1).max(initial=0))
        if width:
            order = np.where(static, pages, P)
            order.sort(axis=-1)
            order = order[..., :width]
            static_pages = np.where(order == P, -1, order).astype(np.int32)
        else:
            static_pages = np.full((Bd, L, H, 1), -1, dtype=np.int32)
        static_t = self._upload(static_pages)
        dynamic_t = self._upload(dynamic)
        if self.cache.keeps_minmax:
            mm_np = np.full((Bd, L, H, P), -1, dtype=np.int32)
            for b, s in enumerate(dseqs):
                w = min(P, s.tables.mm.shape[2])
                mm_np[b, :, :, :w] = s.tables.mm[:, :, :w]
            out["mm"] = self._upload(mm_np)
        plans = []
        for l in range(L):
            needs = bool(self._layer_has_resident_topk[l] or due_layers[l] or dynamic[:, l].any())
            needs = needs and self.cache.keeps_minmax
            all_full = self._all_full_layer[l]
            plans.append(DecodeLayerPlan(full_heads=self._full_heads[l],
                                         pages=None if all_full else static_t[:, l].contiguous(),
                                         dynamic=dynamic_t[:, l] if needs else None, needs_scores=needs,
                                         any_full=self._any_full[l], all_full=all_full,
                                         full_q=self._full_q[l], window=self.windows[l]))
        out["plans"] = plans
        out["due_layers"] = due_layers
        out["dseqs"] = dseqs
        return out

    def _due_topk(self, seqs, decoding, dec, topk_np) -> dict[int, np.ndarray]:
        """Per decoding sequence (batch index): top-K rows [m, K] for its due OFFLOAD heads, in due_heads order."""
        out = {}
        if not self.has_offload:
            return out
        b = 0
        for i, s in enumerate(seqs):
            if not decoding[i]:
                continue
            layers, heads = s.rk.due_heads()
            if len(layers):
                out[i] = np.stack([topk_np[int(l)][b, int(h)] for l, h in zip(layers, heads)])
            b += 1
        return out
