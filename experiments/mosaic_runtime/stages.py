"""One scheduler on the workers: place with measured costs, execute the expert stage, decide bypasses on the real
answers, execute the aggregator stage per aggregation variant; and the simulator's prediction of each stage.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from tessera.experiments.mosaic import place
from tessera.experiments.mosaic_runtime.predict import predict_stage, replay_requests
from tessera.experiments.mosaic_runtime.program import QUEUE_PLACERS, stage_program
from tessera.experiments.mosaic_runtime.workload import ExpertAnswers, aggregator_prompt, parse_expert_stage
from tessera.placement.measured import PromptView, measured_problem
from tessera.runtime.moa.executor import StageOutcome, execute_stage
from tessera.runtime.moa.prompts import ReplicaSpec, WorkPrompt
from tessera.workload.moa_parse import parse_answer

GIB = 2**30


@dataclass
class StageEnv:
    """What every stage of a run shares: the pool, memory and batch of the placer, folders, the sim context."""

    pool: object
    workers: int
    worker_memory_bytes: float
    batch_size: int
    folder_of: dict  # expert name -> checkpoint folder
    aggregator: object  # RealExpert
    seed: int
    ctx_for: Callable  # kv_bytes per expert -> MoASimContext
    on_dispatched: Callable | None = None  # test hook: called once a stage's first phases are dispatched
    recorder: object = None  # StageProgram.recorder: every engine step of a stage timed (None: not recorded)
    step_time: Callable | None = None  # recorded steps (dicts) -> the calibration's time for each one's shape


@dataclass
class StageResult:
    """A stage as measured and as the simulator predicted it."""

    plan: object
    problem: object
    solve_s: float
    measured: StageOutcome
    predicted: object  # sim StageRun
    wall_s: float  # the driver's wall clock around execute_stage (dispatch to last result)
    load_avg: float = float("nan")  # the driver machine's 1-minute load average when the stage ended
    steps: list[dict] = field(default_factory=list)  # measured engine steps, each with `fit_s` (env.step_time)


@dataclass
class VariantResult:
    aggregation: str
    decisions: dict  # query -> AggregationDecision
    final: dict  # query -> final answer
    correct: dict  # query -> bool
    stage: StageResult | None


def run_stage(env: StageEnv, name: str, placer_params: dict, prompts: list[WorkPrompt], costs: dict, stage: str,
              query_of: dict[int, int], instruct_max_replicas: int | None = 1) -> StageResult:
    views = [PromptView(p.request_id, p.expert, len(p.token_ids)) for p in prompts]
    problem, reserve = measured_problem(views, costs, env.workers, env.worker_memory_bytes, env.batch_size,
                                        instruct_max_replicas)
    plan, solve_s = place(problem, name, placer_params)
    kv_bytes = {e: reserve[e] * costs[e].kv_bytes_per_token for e in reserve}
    replicas = {e: ReplicaSpec(e, env.folder_of[e], kv_bytes[e] / GIB) for e in reserve}
    program = stage_program(problem, plan, {p.request_id: p for p in prompts}, replicas, env.workers,
                            use_queue=name in QUEUE_PLACERS, recorder=env.recorder)
    t0 = time.perf_counter()
    measured = execute_stage(env.pool, program, on_dispatched=env.on_dispatched)
    wall = time.perf_counter() - t0
    predicted = predict_stage(env.ctx_for(kv_bytes), problem, plan, replay_requests(measured.served, stage, query_of),
                              stage)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # other jobs skew the timings
    steps = ([{**r, "fit_s": fit} for r, fit in zip(measured.steps, env.step_time(measured.steps))]
             if env.step_time else [])
    return StageResult(plan, problem, solve_s, measured, predicted, wall, load_avg, steps)


def aggregate(env: StageEnv, routed, answers: ExpertAnswers, policy, policy_name: str, name: str,
              placer_params: dict, costs: dict, renderer, first_id: int) -> VariantResult:
    """Bypass decisions on the experts' parsed answers; the aggregator stage on the rest; final answers."""
    decisions, prompts, final = {}, [], {}
    for q, rq in enumerate(routed):
        d = policy.decide(answers.answers[q], list(rq.experts))
        decisions[q] = d
        if d.bypass:
            final[q] = d.answer
        else:
            prompts.append(aggregator_prompt(first_id + q, rq, answers.responses[q], answers.answers[q],
                                             env.aggregator, renderer, env.seed))
    stage = None
    if prompts:
        query_of = {first_id + q: q for q in range(len(routed))}
        stage = run_stage(env, name, placer_params, prompts, costs, "aggregator", query_of,
                          instruct_max_replicas=None)
        for x in stage.measured.served:
            q = x.request_id - first_id
            final[q] = parse_answer(x.text, routed[q].question)
    correct = {q: final[q] == rq.question.answer for q, rq in enumerate(routed)}
    return VariantResult(policy_name, decisions, final, correct, stage)


def expert_answers(routed, stage: StageResult) -> ExpertAnswers:
    return parse_expert_stage(routed, stage.measured.served)
