"""Runtime decode speed against a peer: Tessera's engine under kvpolicy full / quest / flexicache and
transformers on the same checkpoint, dtype, batch and prompts, per (context, batch), in one run.

A point decodes --tokens greedy tokens per request from prompts of context - tokens tokens (so decode ends
at the context), B equal-length windows of the Python standard library's source in the model's tokenizer.
Decode tokens/s exclude prefill for every system. Tessera: the wall and process CPU time of every engine
step() in which all requests decode (scheduling, forward, sampling and the KV policy's bookkeeping and page
moves); the engine's own stats()["decode_tokens_per_s"] times only forward + sampling of those steps and is
shown beside it ("fwd tok/s"). transformers: a greedy loop of one-token forwards with past_key_values (a
DynamicCache), each step timed (benchmarks/decode_peer.py). One prefill per point is shared by all: the
first Tessera engine computes it into a PromptKVStore (runtime/prompt_kv.py), the other policies restore
it and transformers' cache is built from it (--peer-prefill own: transformers prefills itself). Systems
run --rounds times, interleaved (order reversed every other round); rates are total tokens over total time.
Ratios: full / transformers, and quest, flexicache / full, on CPU time (wall in brackets).

    .venv/bin/python benchmarks/runtime_decode.py --model smollm2          # 2k/4k/8k x batch 1/8
    .venv/bin/python benchmarks/runtime_decode.py --model smollm2 --quick  # a 1-2 minute smoke run
    .venv/bin/python benchmarks/runtime_decode.py                          # the shipped byte model
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helpers, also when imported by a test
from decode_peer import DecodeRun, cache_from_prefills, greedy_decode, load_peer, own_prefill  # noqa: E402
from decode_prompts import random_prompts, text_prompts  # noqa: E402

from tessera.kernels.layout import PAGE_SIZE  # noqa: E402
from tessera.paths import REPO_ROOT  # noqa: E402
from tessera.runtime.engine import Engine, EngineConfig  # noqa: E402
from tessera.runtime.prompt_kv import PromptKVStore  # noqa: E402
from tessera.runtime.sequence import SamplingParams  # noqa: E402

POLICIES = {"full": {}, "quest": {"topk_pages": 16}, "flexicache": {"topk_pages": 16, "rerank_interval": 16}}
ALIASES = {"smollm2": "smollm2-135m-instruct", "tiny": "tessera-tiny-byte"}
PEER = "transformers"
GIB = 2**30


def resolve_model(name: str) -> Path:
    """A checkpoint folder, a folder under models/, or an alias (smollm2, tiny)."""
    for path in (Path(name), REPO_ROOT / "models" / ALIASES.get(name, name)):
        if (path / "config.json").is_file():
            return path
    hint = " (build it with `make smollm2`)" if "smollm2" in name else ""
    raise SystemExit(f"--model {name}: no checkpoint folder (config.json) there or under models/{hint}")


def engine_config(policy: str, model, batch: int, context: int) -> EngineConfig:
    """Pools sized for the point (every head-page of every request, plus slack), prefill a prompt per step."""
    c = model.config
    pages = batch * c.num_hidden_layers * c.num_key_value_heads * (-(-context // PAGE_SIZE) + 1)
    page_bytes = 2 * PAGE_SIZE * c.head_dim * model.model.embed_tokens.weight.element_size()
    return EngineConfig(kvpolicy=policy, kvpolicy_params=POLICIES[policy], max_num_seqs=batch,
                        max_num_batched_tokens=max(2048, context), num_device_blocks=int(pages * 1.05) + 64,
                        host_kv_gib=pages * 1.05 * page_bytes / GIB + 1e-3)


def tessera_decode(base: Engine, store: PromptKVStore, policy: str, prompts: list[list[int]], num_tokens: int,
                   context: int) -> DecodeRun:
    """One engine of the policy decodes the batch; times every step where all requests decode."""
    engine = Engine(base.model, base.tokenizer, engine_config(policy, base.model, len(prompts), context),
                    name=base.name, prompt_kv=store, eos_ids=base.eos_ids)
    ids = [engine.add_request(p, SamplingParams(max_tokens=num_tokens, ignore_eos=True)) for p in prompts]
    bar = _prefill_bar(engine, prompts, store, policy)
    wall = cpu = 0.0
    decoded = 0
    while engine.has_unfinished():
        before = engine.decode_tokens
        t0, c0 = time.perf_counter(), time.process_time()
        engine.step()
        if engine.decode_tokens > before:
            decoded += engine.decode_tokens - before
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        elif bar is not None:
            bar.update(sum(min(s.num_computed_tokens, s.num_prompt_tokens) for s in engine.sequences.values()) - bar.n)
    if bar is not None:
        bar.close()
    stats = engine.stats()
    extra = {"fwd": stats["decode_tokens_per_s"], "moved": stats["bytes_moved"], "reloads": stats["num_reloads"]}
    return DecodeRun([engine.sequences[i].output_token_ids for i in ids], decoded, wall, cpu, extra)


def _prefill_bar(engine: Engine, prompts: list[list[int]], store: PromptKVStore, policy: str):
    """A progress bar over the prompt tokens this engine must compute (None when all are stored)."""
    todo = sum(len(p) for p in prompts if store.get(p) is None)
    if not todo:
        return None
    from tqdm import tqdm
    return tqdm(total=sum(len(p) for p in prompts), desc=f"  prefill ({policy})", unit="tok", unit_scale=True,
                leave=False, file=sys.stderr)


def peer_decode(peer, store: PromptKVStore, prompts: list[list[int]], num_tokens: int, own: bool) -> DecodeRun:
    cache, logits = own_prefill(peer, prompts) if own else cache_from_prefills(peer, [store.get(p) for p in prompts])
    run = greedy_decode(peer, cache, logits.to(peer.device), num_tokens)
    del cache
    return run


def common_prefix(a: list[list[int]], b: list[list[int]]) -> float:
    """Mean fraction of each request's output that a and b share before they first differ."""
    shares = []
    for x, y in zip(a, b):
        n = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))
        shares.append(n / max(len(x), 1))
    return sum(shares) / max(len(shares), 1)


class Progress:
    """Which point and system runs, elapsed time and an ETA from a rough cost model of the remaining work."""

    def __init__(self, points: list[tuple[int, int]], systems: int, rounds: int, tokens: int) -> None:
        self.t0 = time.perf_counter()
        self.points, self.work = points, {}
        for ctx, b in points:  # seconds-ish at ~100 GFLOP/s: prefill grows with the context, decode with the KV
            self.work[ctx, b] = (b * ctx * (1 + ctx / 8192) * 3e-3, (0.06 + b * ctx * 5e-6) * (tokens - 1))
        self.systems, self.rounds = systems, rounds
        self.total = sum(p + d * systems * rounds for p, d in self.work.values())
        self.done = 0.0

    def advance(self, point: tuple[int, int], runs: int = 1, prefill: bool = False) -> None:
        p, d = self.work[point]
        self.done += (p if prefill else 0.0) + d * runs

    def say(self, i: int, what: str) -> None:
        elapsed = time.perf_counter() - self.t0
        eta = f", ETA ~{_clock(elapsed * (self.total - self.done) / self.done)}" if self.done > 0 else ""
        ctx, b = self.points[i]
        print(f"[{i + 1}/{len(self.points)}] context {ctx} batch {b}: {what} (elapsed {_clock(elapsed)}{eta})",
              file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="checkpoint folder, a folder under models/, smollm2 or tiny")
    parser.add_argument("--contexts", "--context", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--batches", "--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=32, help="greedy tokens per request (the first from prefill)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats of every system per point")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--no-peer", action="store_true", help="skip transformers")
    parser.add_argument("--peer-prefill", choices=["shared", "own"], default="shared",
                        help="own: transformers computes its own prefill each round (slower, a check)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared box)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat-prompt", action="store_true",
                        help="every request of a batch gets the same window: one prefill per point instead of B (the "
                             "untimed part that dominates at 8k on CPU); decode still reads B copies of the KV")
    parser.add_argument("--quick", action="store_true", help="smoke run: contexts 512 1024, batches 1 2, 8 tokens")
    args = parser.parse_args(argv)
    if args.quick:
        args.contexts, args.batches, args.tokens, args.rounds = [512, 1024], [1, 2], 8, 1
    if args.tokens < 2:
        parser.error("--tokens must be >= 2 (the first token comes from the prefill)")
    return args


def main(argv=None) -> dict:
    """Runs the benchmark, prints the table; returns {(context, batch, system): [DecodeRun per round]}."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = resolve_model(args.model)
    base = Engine.from_checkpoint(folder, EngineConfig(num_device_blocks=1), device=args.device)
    limit = base.model.config.max_position_embeddings
    bad = [c for c in args.contexts if not args.tokens < c <= limit]
    if bad:
        raise SystemExit(f"--contexts {bad}: each must exceed --tokens {args.tokens} and be <= the model's "
                         f"context length {limit}")
    peer, why = (None, "--no-peer") if args.no_peer else load_peer(folder, base.dtype)
    if peer is None:
        print(f"transformers comparison skipped: {why}", file=sys.stderr, flush=True)
    else:
        peer.to(base.device)
    systems = list(args.policies) + ([PEER] if peer is not None else [])
    # per context, the largest batch first: smaller batches' prompts are its first windows, already stored
    points = [(c, b) for c in sorted(args.contexts) for b in sorted(args.batches, reverse=True)]
    load0, t0 = os.getloadavg(), time.perf_counter()
    progress = Progress(points, len(systems), args.rounds, args.tokens)
    results: dict = {}
    store, store_context = None, None
    for i, (context, batch) in enumerate(points):
        prompts = _prompts(base, 1 if args.repeat_prompt else batch, context - args.tokens)
        prompts = prompts * batch if args.repeat_prompt else prompts
        if store_context != context:
            store, store_context = None, context
            gc.collect()
            store = PromptKVStore()
        for r in range(args.rounds):
            for system in systems if r % 2 == 0 else systems[::-1]:  # round 0: a policy computes the prefill
                progress.say(i, f"round {r + 1}/{args.rounds}, {system}")
                fresh = system != PEER and store.get(prompts[-1]) is None
                if system == PEER:
                    run = peer_decode(peer, store, prompts, args.tokens, args.peer_prefill == "own")
                else:
                    run = tessera_decode(base, store, system, prompts, args.tokens, context)
                progress.advance((context, batch), prefill=fresh)
                results.setdefault((context, batch, system), []).append(run)
                gc.collect()
    wall = time.perf_counter() - t0
    print_table(results, points, systems, args, base, folder, why)
    print(f"load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end ({os.cpu_count()} CPUs); "
          f"benchmark wall time {_clock(wall)}")
    return results


def _prompts(base: Engine, batch: int, length: int) -> list[list[int]]:
    if base.tokenizer is None:
        return random_prompts(base.model.config.vocab_size, batch, length)
    return text_prompts(base.tokenizer, batch, length)


def print_table(results: dict, points, systems, args, base: Engine, folder: Path, why: str | None) -> None:
    prompts = "random ids (no tokenizer)" if base.tokenizer is None else "stdlib source"
    if args.repeat_prompt:
        prompts += ", one window repeated per batch (one prefill; each request's KV in its own pages)"
    peer = f"skipped ({why})" if why else f"{args.peer_prefill} prefill"
    print(f"model {folder.name} ({base.dtype}, {base.device}), {torch.get_num_threads()} thread(s), {args.tokens} "
          f"tokens per request ({args.tokens - 1} timed decode steps), {args.rounds} round(s), prompts: {prompts}; "
          f"transformers: {peer}")
    head = (f"{'context':>7} {'batch':>5} {'system':>12} {'tok/s cpu':>10} {'tok/s wall':>10} {'ratio cpu':>9} "
            f"{'(wall)':>7} {'vs':>12} {'fwd tok/s':>9} {'same as full':>12} {'MB moved':>9} {'reloads':>7}")
    print(head)
    for context, batch in sorted(points):
        rate = {s: _rates(results[context, batch, s]) for s in systems}
        for s in systems:
            runs, (cpu, wall) = results[context, batch, s], rate[s]
            run = runs[0]
            ref = PEER if s == "full" and PEER in rate else "full" if s != "full" and s != PEER and "full" in rate \
                else None
            ratio = f"{cpu / rate[ref][0]:8.2f}x {wall / rate[ref][1]:6.2f}x" if ref else f"{'':>9} {'':>7}"
            fwd = f"{sum(r.extra['fwd'] for r in runs) / len(runs):9.1f}" if "fwd" in run.extra else f"{'':>9}"
            same = f"{common_prefix(run.tokens, results[context, batch, 'full'][0].tokens):12.2f}" \
                if "full" in systems and s != "full" else f"{'':>12}"
            moved = f"{run.extra['moved'] / 2**20:9.1f} {run.extra['reloads']:7d}" if "moved" in run.extra else ""
            print(f"{context:7d} {batch:5d} {s:>12} {cpu:10.1f} {wall:10.1f} {ratio} {ref or '':>12} {fwd} "
                  f"{same} {moved}".rstrip())
    _print_targets(results, points, systems)


def _rates(runs: list[DecodeRun]) -> tuple[float, float]:
    """(tokens/s on CPU time, on wall time) over every round."""
    tokens = sum(r.decode_tokens for r in runs)
    return tokens / sum(r.cpu_s for r in runs), tokens / sum(r.wall_s for r in runs)


def _print_targets(results: dict, points, systems) -> None:
    """The issue's targets: full >= 1.0x transformers everywhere; flexicache >= 2x full at the longest context."""
    if "full" not in systems:
        return
    if PEER in systems:
        ratios = {(c, b): _rates(results[c, b, "full"])[0] / _rates(results[c, b, PEER])[0] for c, b in points}
        worst = min(ratios, key=ratios.get)
        print(f"target full >= 1.0x transformers at every point: {'met' if ratios[worst] >= 1.0 else 'MISSED'} "
              f"(lowest {ratios[worst]:.2f}x at context {worst[0]} batch {worst[1]}, CPU time)")
    if "flexicache" in systems:
        longest = max(c for c, _ in points)
        ratios = {b: _rates(results[longest, b, "flexicache"])[0] / _rates(results[longest, b, "full"])[0]
                  for c, b in points if c == longest}
        worst = min(ratios, key=ratios.get)
        print(f"target flexicache >= 2x full at context {longest}: {'met' if ratios[worst] >= 2.0 else 'MISSED'} "
              f"(lowest {ratios[worst]:.2f}x at batch {worst}, CPU time)")


if __name__ == "__main__":
    main()
