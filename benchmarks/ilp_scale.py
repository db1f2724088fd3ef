"""ILP scale benchmark: MOSAIC solve time, gap and makespan vs the LP bound and vs LPT, by size.

Instances resample the profiled prompt costs of the MMLU-Pro expert stage on H100-80GB workers
(16 experts); `--quick` runs a short subset. Prints one table row per (workers, prompts).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
from tqdm import tqdm

from tessera.placement import MosaicConfig, MosaicPlacer, build_placement_problem, make_placer
from tessera.workload.moa import generate_moa_workload
from tessera.workload.moa_defaults import MoAConfig

FULL = {"workers": (4, 8, 16, 64), "prompts": (1_000, 6_300, 50_000)}
QUICK = {"workers": (4, 16), "prompts": (1_000, 6_300)}


def resized(base, num_workers: int, num_prompts: int, seed: int = 0):
    """base's experts and costs on num_workers workers, num_prompts prompts drawn with replacement."""
    rows = np.random.default_rng(seed).integers(len(base.prompt_expert), size=num_prompts)
    caps = tuple(num_workers if kind == "reasoning" else 1 for kind in base.expert_kinds)
    return dataclasses.replace(
        base, workers=tuple(f"w{w}" for w in range(num_workers)),
        worker_memory_bytes=(base.worker_memory_bytes[0],) * num_workers, max_replicas=caps,
        prompt_expert=tuple(base.prompt_expert[r] for r in rows),
        prompt_cost_s=tuple(base.prompt_cost_s[r] for r in rows), prompt_ids=(),
        prompt_cost_tp_s=(), expert_load_tp_s=())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 and 16 workers, 1k and 6.3k prompts")
    parser.add_argument("--workers", type=int, nargs="*", help="only these worker counts")
    parser.add_argument("--prompts", type=int, nargs="*", help="only these prompt counts")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    sizes["workers"] = tuple(args.workers or sizes["workers"])
    sizes["prompts"] = tuple(args.prompts or sizes["prompts"])
    base = build_placement_problem(generate_moa_workload(MoAConfig(), seed=0), ["H100"] * 4)
    header = (f"{'workers':>7} {'prompts':>7} {'form':>10} {'phases':>6} {'status':>10} "
              f"{'solve_s':>7} {'gap':>6} {'makespan_s':>10} {'lp_bound_s':>10} {'vs_LP':>6} "
              f"{'lpt_s':>8} {'lpt/ilp':>7}")
    cases = [(w, n) for w in sizes["workers"] for n in sizes["prompts"]]
    bar = tqdm(cases, desc="ILP cases", unit="case", file=sys.stderr)  # solves take up to a minute each
    tqdm.write(header)
    for num_workers, num_prompts in bar:
        bar.set_postfix_str(f"{num_workers} workers x {num_prompts} prompts")
        prob = resized(base, num_workers, num_prompts)
        limit = 60.0 if num_prompts * num_workers > 100_000 else 10.0
        start = time.perf_counter()
        plan = MosaicPlacer(MosaicConfig(time_limit_s=limit, compute_lp_bound=True)).place(prob)
        wall = time.perf_counter() - start
        lpt = make_placer("lpt").place(prob).makespan_s
        if plan.fallback is not None:
            form = f"->{plan.fallback}"
        elif "ILP not needed" in plan.message:
            form = "certified"  # the warm start met the combinatorial bound within the gap
        else:
            form = plan.message.split(" ILP")[0]
        phases = max(len(p) for p in plan.phases.values())
        gap = f"{plan.gap:.2%}" if plan.gap is not None else "-"
        tqdm.write(f"{num_workers:>7} {num_prompts:>7} {form:>10} {phases:>6} {plan.status:>10} "
                   f"{wall:>7.2f} {gap:>6} {plan.makespan_s:>10.1f} {plan.lp_bound_s:>10.1f} "
                   f"{plan.makespan_s / plan.lp_bound_s:>6.3f} {lpt:>8.1f} {lpt / plan.makespan_s:>7.3f}")


if __name__ == "__main__":
    main()
