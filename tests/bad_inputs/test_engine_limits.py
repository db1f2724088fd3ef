"""Engine limits in the simulator: requests an engine can never run are rejected with a status naming the keys
and the fix (never a stall), malformed requests and engine settings are errors before the run starts.
"""
import math

import pytest

from tessera.memory import MemoryConfig
from tessera.results import rejection_summary
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router, request_frame
from tessera.types import Request, WorkerSpec
from tests.bad_inputs.corpus import refused
from tests.sim.fakes import TINY_GPU, TINY_MODEL, LinearCost, worker_specs

NAN, INF = float("nan"), float("inf")


def cluster(budget=128, chunked=True, specs=None, memory=MemoryConfig(0.5, 0.0), max_seqs=8):
    return Cluster(specs or worker_specs(1), lambda s: LinearCost(),
                   SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, chunked_prefill=chunked),
                   memory, make_router("round_robin"))


def run(requests, **options):
    return cluster(**options).run(requests)


def statuses(result):
    return {s.request_id: s.status for s in result.seqs}


# ----- requests an engine can never run: rejected one by one, each saying why and what to change
REJECTIONS = [  # (id, requests, cluster options, rejected ids, needles of their status)
    ("prompt-over-step-budget", [Request(0, 0.0, 300, 4), Request(1, 0.0, 50, 4)],
     dict(budget=128, chunked=False), [0],
     ["300-token prompt", "engine.max_num_batched_tokens=128", "engine.chunked_prefill=false", "fix:"]),
    ("every-prompt-over-step-budget", [Request(i, 0.01 * i, 200 + i, 4) for i in range(5)],
     dict(budget=128, chunked=False), [0, 1, 2, 3, 4], ["engine.max_num_batched_tokens=128"]),
    ("preempted-request-outgrows-step-budget", [Request(i, 0.0, 500, 400) for i in range(4)],
     dict(budget=512, chunked=False), None, ["was preempted after", "engine.chunked_prefill=false"]),
    ("request-larger-than-kv-pool", [Request(0, 0.0, 5000, 10), Request(1, 0.0, 10, 10)], {}, [0],
     ["needs 314 KV blocks", "engine.gpu_memory_utilization", "cluster.kv_gib"]),
    ("every-request-larger-than-kv-pool", [Request(i, 0.0, 3000, 10) for i in range(3)], {}, [0, 1, 2],
     ["KV blocks", "fix:"]),
]


@pytest.mark.parametrize("requests, options, rejected, needles", [c[1:] for c in REJECTIONS],
                         ids=[c[0] for c in REJECTIONS])
def test_requests_that_can_never_run_are_rejected_with_the_fix(requests, options, rejected, needles):
    result = run(requests, **options)  # before: "simulation stalled" RuntimeError for the step-budget cases
    status = statuses(result)
    refused_ids = sorted(i for i, s in status.items() if s.startswith("rejected"))
    assert refused_ids and (rejected is None or refused_ids == rejected), status
    for i in refused_ids:
        assert all(n in status[i] for n in needles), status[i]
        assert math.isnan(next(s.finish_s for s in result.seqs if s.request_id == i))
    assert all(s == "finished" for i, s in status.items() if i not in refused_ids)
    summary = rejection_summary(request_frame(result))
    assert needles[0] in summary
    if len(refused_ids) == len(requests):
        assert summary.startswith(f"every request ({len(requests)} of {len(requests)}) was rejected")


# ----- malformed requests: a ValueError naming the request and the field, before the run
BAD_REQUESTS = [
    ("prompt-zero", Request(3, 0.0, 0, 5), ["request 3", "prompt_tokens=0"]),
    ("output-zero", Request(3, 0.0, 5, 0), ["request 3", "output_tokens=0"]),
    ("prompt-1e23", Request(3, 0.0, 10**23, 5), ["request 3", "prompt_tokens", "10,000,000"]),
    ("prompt-float", Request(3, 0.0, 1.5, 5), ["request 3", "prompt_tokens=1.5"]),
    ("output-inf", Request(3, 0.0, 5, INF), ["request 3", "output_tokens=inf"]),
    ("arrival-nan", Request(3, NAN, 5, 5), ["request 3", "arrival_s=nan"]),
    ("arrival-inf", Request(3, INF, 5, 5), ["request 3", "arrival_s=inf"]),
    ("arrival-negative", Request(3, -1.0, 5, 5), ["request 3", "arrival_s=-1.0"]),
    ("unknown-model", Request(3, 0.0, 5, 5, model="other"), ["request 3", "'other'", "serves only"]),
]


@pytest.mark.parametrize("request_, needles", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_malformed_requests_are_refused_before_the_run(request_, needles):
    refused(ValueError, lambda: run([Request(0, 0.0, 5, 5), request_]), *needles)


def test_duplicate_request_ids_are_refused():
    refused(ValueError, lambda: run([Request(7, 0.0, 5, 5), Request(7, 1.0, 5, 5)]), "request id 7", "twice")


# ----- engine settings
SETTINGS = [
    ("max-num-seqs-zero", dict(max_num_seqs=0), ["scheduler.max_num_seqs"]),
    ("max-num-seqs-fraction", dict(max_num_seqs=2.5), ["scheduler.max_num_seqs"]),
    ("block-size-zero", dict(block_size=0), ["scheduler.block_size"]),
    ("block-size-fraction", dict(block_size=16.5), ["scheduler.block_size"]),
    ("budget-zero", dict(max_num_batched_tokens=0), ["scheduler.max_num_batched_tokens"]),
    ("budget-negative", dict(max_num_batched_tokens=-8192), ["scheduler.max_num_batched_tokens"]),
    ("budget-below-max-num-seqs", dict(max_num_batched_tokens=64, max_num_seqs=128),  # vLLM refuses it too
     ["scheduler.max_num_batched_tokens=64", "max_num_seqs=128", "raise max_num_batched_tokens"]),
    ("budget-one-below-max-num-seqs", dict(max_num_batched_tokens=127, max_num_seqs=128),
     ["scheduler.max_num_batched_tokens=127"]),
    ("chunked-string", dict(chunked_prefill="no"), ["scheduler.chunked_prefill"]),
    ("watermark-one", dict(watermark=1.0), ["scheduler.watermark"]),
    ("watermark-nan", dict(watermark=NAN), ["scheduler.watermark"]),
    ("watermark-negative", dict(watermark=-0.1), ["scheduler.watermark"]),
    ("memory-utilisation-zero", "memory", ["gpu_memory_utilization"]),
    ("memory-utilisation-nan", "memory-nan", ["gpu_memory_utilization"]),
]


@pytest.mark.parametrize("changes, needles", [c[1:] for c in SETTINGS], ids=[c[0] for c in SETTINGS])
def test_bad_engine_settings_are_refused(changes, needles):
    if changes == "memory":
        refused(ValueError, lambda: MemoryConfig(gpu_memory_utilization=0.0), *needles)
    elif changes == "memory-nan":
        refused(ValueError, lambda: MemoryConfig(gpu_memory_utilization=NAN), *needles)
    else:
        refused(ValueError, lambda: SchedulerConfig(**changes), *needles)


MEMORY = [  # (id, worker spec changes, needles): the cluster cannot be built
    ("kv-reservation-holds-no-block", dict(kv_bytes_per_gpu=100.0), ["cluster.kv_gib", "holds no KV block"]),
    ("kv-reservation-nan", dict(kv_bytes_per_gpu=NAN), ["finite"]),
    ("model-larger-than-gpu", dict(gpu=type(TINY_GPU)("small", 1e6, 1e12, 1e14, "pcie", "nvlink")),
     ["weights needs", "bigger GPU"]),
]


@pytest.mark.parametrize("changes, needles", [c[1:] for c in MEMORY], ids=[c[0] for c in MEMORY])
def test_memory_that_cannot_hold_the_model_or_a_kv_block_is_a_memory_error(changes, needles):
    spec = WorkerSpec(worker_id=0, gpu=TINY_GPU, model=TINY_MODEL)
    spec = WorkerSpec(**{**{f: getattr(spec, f) for f in spec.__slots__}, **changes})
    refused(MemoryError, lambda: cluster(specs=[spec]), *needles)


CASES = ([c[0] for c in REJECTIONS] + [c[0] for c in BAD_REQUESTS] + ["duplicate-ids"]
         + [c[0] for c in SETTINGS] + [c[0] for c in MEMORY])


def test_a_budget_equal_to_max_num_seqs_is_accepted():
    assert SchedulerConfig(max_num_batched_tokens=128, max_num_seqs=128).max_num_batched_tokens == 128
