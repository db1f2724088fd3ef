"""Runtime decode speed: full KV vs sparse policies on the real engine at long context, side by side.

Runs the shipped model (or --model DIR) on CPU by default: a batch of random-token prompts of
--context tokens, --tokens decode steps each, once per policy in the same process; prints decode
tokens/s, PCIe-equivalent bytes moved and the ratio to `full`.
Run: .venv/bin/python benchmarks/runtime_decode.py [--context 4096] [--batch 4] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys

import torch

from tessera.paths import REPO_ROOT
from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.sequence import SamplingParams

POLICIES = {"full": {}, "quest": {"topk_pages": 16}, "flexicache": {"topk_pages": 16, "rerank_interval": 16}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO_ROOT / "models" / "tessera-tiny-byte"))
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared box)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 256, (args.context,), generator=gen).tolist() for _ in range(args.batch)]
    rows = []
    for i, (name, params) in enumerate(POLICIES.items()):
        config = EngineConfig(kvpolicy=name, kvpolicy_params=params, max_num_seqs=args.batch,
                              max_num_batched_tokens=2048, device_kv_gib=1.0, host_kv_gib=1.0)
        engine = Engine.from_checkpoint(args.model, config, device=args.device)
        print(f"[{i + 1}/{len(POLICIES)}] {name}: prefill {args.batch} x {args.context} tokens, then "
              f"{args.tokens} decode steps", file=sys.stderr, flush=True)
        for prompt in prompts:
            engine.add_request(prompt, SamplingParams(max_tokens=args.tokens, ignore_eos=True))
        engine.run(progress=True)
        stats = engine.stats()
        rows.append((name, params, stats["decode_tokens_per_s"], stats["bytes_moved"], stats["num_reloads"]))
    print(f"model {args.model}, batch {args.batch}, context {args.context}, {args.tokens} decode tokens, "
          f"{args.threads} thread(s)")
    print(f"{'policy':>11} {'params':>36} {'decode tok/s':>13} {'vs full':>8} {'bytes moved':>12} {'reloads':>8}")
    base = rows[0][2]
    for name, params, rate, moved, reloads in rows:
        print(f"{name:>11} {str(params):>36} {rate:13.1f} {rate / base:7.2f}x {moved:12.3g} {reloads:8d}")


if __name__ == "__main__":
    main()
