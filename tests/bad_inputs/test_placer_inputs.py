"""Bad placement inputs (problems, ILP settings, cost settings) are refused by every placer with a clear error.

Malformed problems are PlacementInputError (a ValueError) naming the field; memory that cannot hold a replica
is a MemoryError (baselines) or PlacementInfeasible (mosaic with fallback=raise) naming expert, worker and
shortfall. Every case runs through every placer.
"""
from dataclasses import replace

import pytest

from tessera.placement import (PLACERS, CostConfig, MoAPlacementProblem, MosaicConfig, PlacementInfeasible,
                               PlacementInputError, build_placement_problem, make_placer)
from tessera.types import Request
from tests.bad_inputs.corpus import refused

GB = 1e9
NAN, INF = float("nan"), float("inf")


def problem(**changes) -> MoAPlacementProblem:
    base = MoAPlacementProblem(
        workers=("gpu0", "gpu1"), experts=("e0", "e1"), worker_memory_bytes=(40 * GB, 40 * GB),
        expert_memory_bytes=(20 * GB, 10 * GB), expert_load_s=(1.0, 0.5), max_replicas=(2, 1),
        prompt_expert=(0, 0, 1), prompt_cost_s=(3.0, 2.0, 1.0), expert_kinds=("reasoning", "instruct"),
        prompt_ids=(0, 1, 2), teardown_s=1.0)
    return replace(base, **changes)


# (id, problem changes, needles): refused by check_problem with PlacementInputError
PROBLEMS = [
    ("no-workers", dict(workers=(), worker_memory_bytes=()), ["0 workers"]),
    ("no-experts", dict(experts=(), expert_memory_bytes=(), expert_load_s=(), max_replicas=(), expert_kinds=()),
     ["0 experts"]),
    ("no-prompts", dict(prompt_expert=(), prompt_cost_s=(), prompt_ids=()), ["no prompts"]),
    ("cost-nan", dict(prompt_cost_s=(3.0, NAN, 1.0)), ["prompt_cost_s[1]", "finite"]),
    ("cost-inf", dict(prompt_cost_s=(INF, 2.0, 1.0)), ["prompt_cost_s[0]", "finite"]),
    ("cost-negative", dict(prompt_cost_s=(3.0, 2.0, -1.0)), ["prompt_cost_s[2]", ">= 0"]),
    ("cost-string", dict(prompt_cost_s=(3.0, "2", 1.0)), ["prompt_cost_s[1]"]),
    ("expert-memory-nan", dict(expert_memory_bytes=(NAN, 10 * GB)), ["expert_memory_bytes[0]"]),
    ("expert-memory-negative", dict(expert_memory_bytes=(20 * GB, -1.0)), ["expert_memory_bytes[1]"]),
    ("worker-memory-inf", dict(worker_memory_bytes=(INF, 40 * GB)), ["worker_memory_bytes[0]"]),
    ("worker-memory-zero", dict(worker_memory_bytes=(40 * GB, 0.0)), ["worker_memory_bytes[1]", "gpu1"]),
    ("load-nan", dict(expert_load_s=(NAN, 0.5)), ["expert_load_s[0]"]),
    ("load-negative", dict(expert_load_s=(1.0, -0.5)), ["expert_load_s[1]"]),
    ("replicas-zero", dict(max_replicas=(0, 1)), ["max_replicas['e0']", "1..2"]),
    ("replicas-above-workers", dict(max_replicas=(3, 1)), ["max_replicas['e0']", "1..2"]),
    ("replicas-fraction", dict(max_replicas=(1.5, 1)), ["max_replicas['e0']", "whole number"]),
    ("prompt-expert-out-of-range", dict(prompt_expert=(0, 0, 2)), ["prompt_expert[2]", "0..1"]),
    ("prompt-expert-negative", dict(prompt_expert=(-1, 0, 1)), ["prompt_expert[0]"]),
    ("prompt-expert-float", dict(prompt_expert=(0, 0.5, 1)), ["prompt_expert[1]"]),
    ("costs-length-mismatch", dict(prompt_cost_s=(3.0, 2.0)), ["prompt_cost_s has 2 entries"]),
    ("memory-length-mismatch", dict(worker_memory_bytes=(40 * GB,)), ["worker_memory_bytes has 1 entries"]),
    ("kinds-length-mismatch", dict(expert_kinds=("reasoning",)), ["expert_kinds has 1 entries"]),
    ("teardown-nan", dict(teardown_s=NAN), ["teardown_s"]),
    ("tp-cost-inf", dict(prompt_cost_tp_s=(1.0, INF, 1.0), expert_load_tp_s=(1.0, 1.0)), ["prompt_cost_tp_s"]),
]

# expert e0 needs 50 GB, each worker has 40 GB
TOO_BIG = problem(expert_memory_bytes=(50 * GB, 10 * GB))

SETTINGS = [  # (id, make, needles): ILP and cost settings
    ("mosaic-time-limit-nan", lambda: MosaicConfig(time_limit_s=NAN), ["placement.time_limit_s"]),
    ("mosaic-time-limit-inf", lambda: MosaicConfig(time_limit_s=INF), ["placement.time_limit_s"]),
    ("mosaic-gap-one", lambda: MosaicConfig(mip_gap=1.0), ["placement.mip_gap"]),
    ("mosaic-form", lambda: MosaicConfig(form="dense"), ["placement.form"]),
    ("mosaic-buckets-fraction", lambda: MosaicConfig(num_buckets=2.5), ["placement.num_buckets"]),
    ("mosaic-phases-zero", lambda: MosaicConfig(num_phases=0), ["placement.num_phases"]),
    ("mosaic-threads-zero", lambda: MosaicConfig(threads=0), ["placement.threads"]),
    ("mosaic-epsilon-nan", lambda: MosaicConfig(epsilon=NAN), ["placement.epsilon"]),
    ("mosaic-binaries-negative", lambda: MosaicConfig(max_prompt_binaries=-1), ["placement.max_prompt_binaries"]),
    ("mosaic-warm-start-string", lambda: MosaicConfig(warm_start="yes"), ["placement.warm_start"]),
    ("mosaic-fallback", lambda: MosaicConfig(fallback="greedy"), ["placement.fallback"]),
    ("mosaic-unknown-key", lambda: make_placer("mosaic", time_limit=5), ["placement", "'time_limit'", "time_limit_s"]),
    ("placer-unknown", lambda: make_placer("round_robin"), ["placement.name"]),
    ("placer-params", lambda: make_placer("lpt", mip_gap=0.1), ["takes no parameters"]),
    ("costs-batch-zero", lambda: CostConfig(batch_size=0), ["costs.batch_size"]),
    ("costs-batch-fraction", lambda: CostConfig(batch_size=2.5), ["costs.batch_size"]),
    ("costs-chunk-zero", lambda: CostConfig(prefill_chunk_tokens=0), ["costs.prefill_chunk_tokens"]),
    ("costs-samples-zero", lambda: CostConfig(profile_samples=0), ["costs.profile_samples"]),
    ("costs-quantile-nan", lambda: CostConfig(quantile=NAN), ["costs.quantile"]),
    ("costs-bandwidth-inf", lambda: CostConfig(weight_load_Bps=INF), ["costs.weight_load_Bps"]),
    ("costs-start-negative", lambda: CostConfig(engine_start_s=-1), ["costs.engine_start_s"]),
    ("costs-teardown-nan", lambda: CostConfig(teardown_s=NAN), ["costs.teardown_s"]),
    ("costs-replicas-zero", lambda: CostConfig(instruct_max_replicas=0), ["costs.instruct_max_replicas"]),
]

PROBLEM_BUILDS = [  # (id, gpus, requests, needles): build_placement_problem on a tiny MoA workload
    ("build-no-gpus", [], None, ["no workers", "cluster.num_workers"]),
    ("build-mixed-gpus", ["H100-SXM-80GB", "A100-SXM-80GB"], None, ["one GPU type"]),
    ("build-no-requests", ["H100-SXM-80GB"], [], ["no requests"]),
    ("build-unknown-model", ["H100-SXM-80GB"], [Request(0, 0.0, 5, 5, "GPT-9")], ["'GPT-9'", "expert pool"]),
    ("build-no-model", ["H100-SXM-80GB"], [Request(0, 0.0, 5, 5, None)], ["'None'"]),
    ("build-zero-tokens", ["H100-SXM-80GB"], [Request(0, 0.0, 0, 5, "Llama-3.1-8B-Instruct")],
     ["request 0", "prompt_tokens=0"]),
    ("build-huge-tokens", ["H100-SXM-80GB"], [Request(0, 0.0, 5, 10**23, "Llama-3.1-8B-Instruct")],
     ["request 0", "10,000,000"]),
]

CASES = ([(f"{name}/{placer}", "problem") for name, _, _ in PROBLEMS for placer in PLACERS]
         + [(f"too-big/{placer}", "memory") for placer in PLACERS]
         + [(name, "setting") for name, _, _ in SETTINGS] + [(name, "build") for name, *_ in PROBLEM_BUILDS])


@pytest.mark.parametrize("placer", list(PLACERS))
@pytest.mark.parametrize("changes, needles", [c[1:] for c in PROBLEMS], ids=[c[0] for c in PROBLEMS])
def test_malformed_problem_is_refused_by_every_placer(placer, changes, needles):
    bad = problem(**changes)
    refused(PlacementInputError, lambda: make_placer(placer).place(bad), *needles)


@pytest.mark.parametrize("placer", list(PLACERS))
def test_memory_too_small_for_a_replica_names_expert_worker_and_shortfall(placer):
    if placer == "sequential":  # one expert at a time over all GPUs: 50 GB spread over 2 x 40 GB fits
        assert make_placer(placer).place(TOO_BIG).tensor_parallel
        return
    if placer == "mosaic":
        call = lambda: make_placer("mosaic", fallback="raise").place(TOO_BIG)  # noqa: E731
        refused(PlacementInfeasible, call, "'e0' needs 50.0 GB", "'gpu0' has 40.0 GB", "short by 10.0 GB")
        call = lambda: make_placer("mosaic").place(TOO_BIG)  # noqa: E731 (fallback lpt fails too)
        refused(PlacementInfeasible, call, "'e0' needs 50.0 GB", "fallback 'lpt' fails too")
        return
    refused(MemoryError, lambda: make_placer(placer).place(TOO_BIG), "'e0' needs 50.0 GB", "short by 10.0 GB",
            "fix:")


@pytest.mark.parametrize("make, needles", [c[1:] for c in SETTINGS], ids=[c[0] for c in SETTINGS])
def test_bad_ilp_and_cost_settings_are_refused(make, needles):
    refused(PlacementInputError, make, *needles)


@pytest.fixture(scope="module")
def moa_workload():
    from tessera.workload.moa import generate_moa_workload
    from tessera.workload.moa_defaults import MoAConfig

    return generate_moa_workload(MoAConfig(datasets=("gpqa",), num_queries={"gpqa": 2}), seed=0)


@pytest.mark.parametrize("gpus, requests, needles", [c[1:] for c in PROBLEM_BUILDS],
                         ids=[c[0] for c in PROBLEM_BUILDS])
def test_bad_placement_problem_inputs_are_refused(moa_workload, gpus, requests, needles):
    refused(PlacementInputError, lambda: build_placement_problem(moa_workload, gpus, None, requests), *needles)
