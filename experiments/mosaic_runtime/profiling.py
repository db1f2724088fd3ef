"""Profiling before the comparison: every worker measures each checkpoint's step costs (calibrate_experts), then
every expert profile and the aggregator answer a separate validation draw on the workers, every engine step timed.

From these, measured and nothing assumed: one Calibration per checkpoint (fitted to the step sweep and the
validation draw's steps together, so the fit is anchored at the batch shapes MoA stages run), each expert's load
time, mean prompt and output length (the placer's length predictor) and validation accuracy (the weighted bypass
rule's weights).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean

import pandas as pd

from tessera.cost.calibration import Calibration
from tessera.experiments.calibrate_experts import (expert_costs, fit_folder, median_load_s, pooled_steps,
                                                  profile_worker)
from tessera.experiments.mosaic_runtime.settings import RuntimeMoASettings
from tessera.experiments.mosaic_runtime.workload import Renderer, aggregator_prompt, parse_expert_stage, sampling_seed
from tessera.placement.measured import MeasuredExpertCosts
from tessera.runtime.moa.executor import Phase, StageProgram, execute_stage
from tessera.runtime.moa.prompts import ReplicaSpec, WorkPrompt
from tessera.runtime.moa.ray_cluster import WorkerPool
from tessera.types import ModelSpec
from tessera.workload.moa_parse import parse_answer
from tessera.workload.moa_questions import CheckableQuestion
from tessera.workload.moa_real import RealExpert, RoutedQuery, expert_messages

PROFILE_KV_GIB = 0.25
VALIDATION_FIRST_ID = 1_000_000


@dataclass
class Profiled:
    calibrations: dict[str, Calibration]  # per model name (the checkpoint folder's name)
    models: dict[str, ModelSpec]  # per expert name, aggregator included
    costs: dict[str, MeasuredExpertCosts]  # per expert name, aggregator included
    accuracy: dict[str, float]  # per expert: validation accuracy
    load_s: dict[str, float]  # per expert: median measured load time of its checkpoint
    validation: pd.DataFrame = field(default_factory=pd.DataFrame)
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)  # the measured steps every fit was made from
    wall_s: float = 0.0


def profile(pool: WorkerPool, s: RuntimeMoASettings, renderer: Renderer, questions: list[CheckableQuestion],
            routed: list[RoutedQuery]) -> Profiled:
    import ray

    members = list(s.experts) + [s.aggregator]
    folders = sorted({e.model for e in members})
    folder_of = {e.name: e.model for e in members}
    calibs, specs, loads, steps, swept = {}, {}, {}, [], {}
    for folder in folders:
        swept[folder] = ray.get([a.call.remote(profile_worker, w, folder, s.max_num_seqs, s.max_num_batched_tokens,
                                               PROFILE_KV_GIB, s.quick, s.seed, s.dtype)
                                 for w, a in enumerate(pool.actors)])
        specs[folder] = swept[folder][0].spec
        loads[folder] = [p.load_s for p in swept[folder]]
    served, prompts, spans, answer_steps = _answer_all(pool, s, renderer, questions)
    by_id = {x.request_id: x for x in served}
    rows = []
    for p in prompts:
        got = by_id[p.request_id]
        q = questions[(p.request_id - VALIDATION_FIRST_ID) // len(s.experts)]
        answer = parse_answer(got.text, q)
        rows.append({"expert": p.expert, "question": q.question_id, "skill": q.skill,
                     "prompt_tokens": got.prompt_tokens,
                     "output_tokens": got.output_tokens, "answer": answer, "correct": answer == q.answer})
    agg_served, agg_spans, agg_steps = _aggregate_all(pool, s, renderer, routed, served)
    for span in spans + agg_spans:  # every validation load is a load-time measurement of its checkpoint
        loads[folder_of[span.expert]].append(span.ready_s - span.start_s)
    stage_steps = pd.DataFrame(answer_steps + agg_steps)
    for folder in folders:
        mine = (stage_steps[stage_steps["expert"].map(folder_of) == folder] if len(stage_steps)
                else stage_steps).assign(model_folder=folder, source="validation draw")
        calibs[specs[folder].name] = fit_folder(swept[folder], mine)
        steps += [pooled_steps(swept[folder]).assign(source="step sweep"), mine]
    for x, rq in agg_served:
        answer = parse_answer(x.text, rq.question)
        rows.append({"expert": s.aggregator.name, "question": rq.question.question_id, "skill": rq.question.skill,
                     "prompt_tokens": x.prompt_tokens, "output_tokens": x.output_tokens, "answer": answer,
                     "correct": answer == rq.question.answer})
    frame = pd.DataFrame(rows)
    models, costs, load_s = {}, {}, {}
    for e in members:
        part = frame[frame["expert"] == e.name]
        spec = specs[e.model]
        load_s[e.name] = median_load_s(loads[e.model])
        costs[e.name] = expert_costs(e.name, e.kind, calibs[spec.name], spec, load_s[e.name],
                                     float(part["prompt_tokens"].mean()), float(part["output_tokens"].mean()),
                                     e.max_tokens)
        models[e.name] = spec
    accuracy = {e.name: float(frame.loc[frame["expert"] == e.name, "correct"].mean()) for e in s.experts}
    return Profiled(calibs, models, costs, accuracy, load_s, frame, pd.concat(steps, ignore_index=True))


def _answer_all(pool: WorkerPool, s: RuntimeMoASettings, renderer: Renderer, questions: list[CheckableQuestion]
                ) -> tuple[list, list[WorkPrompt], list]:
    """Every expert answers every validation question; expert i runs on worker i mod workers, one phase each."""
    n = len(pool.actors)
    prompts, phases = [], {w: [] for w in range(n)}
    for i, e in enumerate(s.experts):
        mine = []
        for qi, q in enumerate(questions):
            rid = VALIDATION_FIRST_ID + qi * len(s.experts) + i
            mine.append(WorkPrompt(rid, e.name, renderer.tokens(e.model, expert_messages(e, q)), e.max_tokens,
                                   e.temperature, sampling_seed(s.seed + 1, rid)))
        prompts += mine
        phases[i % n].append(Phase([ReplicaSpec(e.name, e.model, PROFILE_KV_GIB)], mine))
    outcome = execute_stage(pool, StageProgram(phases, recorder=step_recorder()))
    return outcome.served, prompts, outcome.spans, outcome.steps


def _aggregate_all(pool, s, renderer, routed, served):
    """The aggregator reads each validation question's routed experts' answers (split over the workers)."""
    by_key = {(x.request_id - VALIDATION_FIRST_ID) // len(s.experts): {} for x in served}
    names = [e.name for e in s.experts]
    for x in served:
        by_key[(x.request_id - VALIDATION_FIRST_ID) // len(s.experts)][x.expert] = x
    prompts, pairs = [], {}
    for qi, rq in enumerate(routed):
        responses = [by_key[qi][name] for name in rq.experts if name in names]
        answers = [parse_answer(r.text, rq.question) for r in responses]
        rid = 2 * VALIDATION_FIRST_ID + qi
        prompts.append(aggregator_prompt(rid, rq, responses, answers, s.aggregator, renderer, s.seed + 1))
        pairs[rid] = rq
    n = len(pool.actors)
    spec = ReplicaSpec(s.aggregator.name, s.aggregator.model, PROFILE_KV_GIB)
    phases = {w: [Phase([spec], prompts[w::n])] for w in range(min(n, len(prompts)))}
    outcome = execute_stage(pool, StageProgram(phases, recorder=step_recorder()))
    return [(x, pairs[x.request_id]) for x in outcome.served], outcome.spans, outcome.steps


def step_recorder():
    """The class that times every engine step of a stage (StageProgram.recorder)."""
    from tessera.experiments.calibrate_runtime_steps import StepRecorder  # imports torch: only when profiling

    return StepRecorder


def validation_summary(p: Profiled) -> dict:
    return {"accuracy": p.accuracy, "load_s": p.load_s,
            "mean_output_tokens": {e: c.predicted_output_tokens for e, c in p.costs.items()},
            "calibration_fit": {name: c.fit.get("step_relative_error") for name, c in p.calibrations.items()},
            "calibration_ops_scale": {name: c.fit.get("ops_scale") for name, c in p.calibrations.items()},
            "mean_validation_accuracy": mean(p.accuracy.values()) if p.accuracy else float("nan")}
