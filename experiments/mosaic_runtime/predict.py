"""The simulator's prediction of a plan the workers executed: same plan, same requests (their measured lengths),
same measured costs (the workers' Calibration, measured load times, the plan's KV reservations).

Differences left to the models are what the comparison measures: step times from the fit, co-resident replicas
sharing a device (the simulator's compute lanes vs engines stepped in turn), and the driver's overheads.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pandas as pd

from tessera.cost.calibration import Calibration, step_shape
from tessera.memory import MemoryConfig
from tessera.placement.plan import PlacementPlan
from tessera.placement.problem import MoAPlacementProblem
from tessera.runtime.moa.prompts import ServedRequest
from tessera.scheduling import SchedulerConfig
from tessera.sim.moa import MoASimContext, StageRun, run_data_parallel, run_expert_stage
from tessera.types import ModelSpec, Request


def sim_context(calibs: dict[str, Calibration], models: dict[str, ModelSpec], load_s: dict[str, float],
                kv_bytes: dict[str, float], num_workers: int, max_num_seqs: int,
                max_num_batched_tokens: int) -> MoASimContext:
    """calibs: per model name; models, load_s, kv_bytes: per expert name (aggregator included). The simulator
    routes a request to the worker whose model has the request's name, so each expert's model is renamed."""
    cache: dict = {}
    calib_of = {expert: calibs[spec.name] for expert, spec in models.items()}
    renamed = {expert: replace(spec, name=expert) for expert, spec in models.items()}

    def cost_for(spec):
        if spec.model.name not in cache:
            cache[spec.model.name] = calib_of[spec.model.name].cost_model(spec.model)
        return cache[spec.model.name]

    first = next(iter(calibs.values()))
    return MoASimContext(gpu=first.gpu, num_gpus=num_workers,
                         scheduler=SchedulerConfig(block_size=16, max_num_seqs=max_num_seqs,
                                                   max_num_batched_tokens=max_num_batched_tokens),
                         memory=MemoryConfig(activation_reserve_gib=0.0), cost_for=cost_for, load_s=dict(load_s),
                         load_tp_s=dict(load_s), models=renamed, kv_bytes=dict(kv_bytes), serial_loads=True)


def step_time_fn(calibs: dict[str, Calibration], models: dict[str, ModelSpec]) -> Callable[[list[dict]], list[float]]:
    """Recorded engine steps (StepRecorder rows with their `expert`) -> each expert's calibrated time for that batch
    shape: the step-level half of the simulator's prediction, checked on the stages' own steps (never fitted)."""
    costs = {expert: calibs[spec.name].cost_model(spec) for expert, spec in models.items()}

    def step_times(rows: list[dict]) -> list[float]:
        return [costs[r.expert].iteration_time(step_shape(r)) for r in pd.DataFrame(rows).itertuples()]

    return step_times


def replay_requests(served: list[ServedRequest], stage: str, query_of: dict[int, int]) -> list[Request]:
    """The served requests as simulator requests: all at 0 s of the stage, with their measured token counts."""
    return [Request(s.request_id, 0.0, s.prompt_tokens, max(1, s.output_tokens), model=s.expert,
                    query_id=query_of.get(s.request_id), stage=stage) for s in served]


def predict_stage(ctx: MoASimContext, problem: MoAPlacementProblem, plan: PlacementPlan, requests: list[Request],
                  stage: str) -> StageRun:
    if plan.tensor_parallel:
        return run_data_parallel(ctx, problem, requests, stage)
    return run_expert_stage(ctx, problem, plan, requests, stage)
