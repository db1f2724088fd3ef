"""`tessera experiment=mosaic backend=runtime`: every scheduler's plan executed by Ray worker actors on real
models, each stage also predicted by the simulator with the same measured costs.

Order: start the pool (local Ray or backend.runtime.ray_address) -> profile (step costs per checkpoint on every
worker, validation answers: lengths, accuracy, load times) -> per scheduler: place on measured costs, expert
stage, bypass decisions on the parsed answers, aggregator stage per aggregation variant, simulator prediction
-> table, Kendall tau, figures, requests.parquet. Nothing is written unless every stage finished.
"""
from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from tessera.aggregation import make_aggregator
from tessera.experiments.config import ConfigError
from tessera.experiments.mosaic import params_with_quick
from tessera.experiments.mosaic_runtime import report
from tessera.experiments.mosaic_runtime.predict import sim_context, step_time_fn
from tessera.experiments.mosaic_runtime.profiling import profile, step_recorder, validation_summary
from tessera.experiments.mosaic_runtime.settings import read_settings
from tessera.experiments.mosaic_runtime.stages import StageEnv, aggregate, expert_answers, run_stage
from tessera.experiments.mosaic_runtime.workload import Renderer, expert_prompts
from tessera.placement import MosaicConfig
from tessera.results import save_run
from tessera.workload.moa_questions import generate_questions
from tessera.workload.moa_real import route

VALIDATION_SEED_OFFSET = 10_007
DATASET = "generated"  # run labels and queries.parquet name the question set as the simulator names datasets


def describe(cfg: DictConfig) -> dict:
    s = read_settings(cfg, params_with_quick(cfg))
    return {"backend": "runtime: Ray worker actors, real models", **s.describe()}


def run(cfg: DictConfig, run_dir: Path, metadata: dict, on_dispatched=None) -> dict:
    from tessera.runtime.moa.executor import WorkerLost
    from tessera.runtime.moa.ray_cluster import RayUnavailable, start_workers, stop_workers

    s = read_settings(cfg, params_with_quick(cfg))
    wall0 = time.perf_counter()
    agg = dict(s.aggregation)
    policy_name = agg.pop("name")
    try:
        make_aggregator(policy_name, **agg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    experts = {e.name: e for e in s.experts}
    questions = generate_questions(s.num_questions, s.seed)
    routed = route(questions, list(s.experts), s.experts_per_query, s.seed)
    val_routed = route(generate_questions(s.validation_questions, s.seed + VALIDATION_SEED_OFFSET), list(s.experts),
                       s.experts_per_query, s.seed + VALIDATION_SEED_OFFSET)
    renderer = Renderer()
    prompts = expert_prompts(routed, experts, renderer, s.seed)
    try:
        pool = start_workers(s.workers, s.threads_per_worker, s.device, s.ray_address, s.dtype, s.max_num_seqs,
                             s.max_num_batched_tokens, s.seed)
    except RayUnavailable as err:
        raise ConfigError(f"backend.runtime: {err}") from None
    from ray.exceptions import RayActorError  # importable now: the pool started
    try:
        prof = profile(pool, s, renderer, [rq.question for rq in val_routed], val_routed)
        profiled_s = time.perf_counter() - wall0
        weights = prof.accuracy if policy_name == "weighted" and "weights" not in agg else None
        policy = make_aggregator(policy_name, **({**agg, "weights": weights} if weights is not None else agg))
        hook = (lambda: on_dispatched(pool)) if on_dispatched else None  # tests kill an actor of the pool here
        rows, frames, queries, stage_steps, gantt = _compare(s, pool, prof, routed, prompts, renderer, policy, policy_name, hook)
        workers = pool.infos
    except (WorkerLost, RayActorError) as err:  # a worker died and no survivor could take over its prompts
        raise SystemExit(f"tessera: experiment=mosaic backend=runtime stopped, nothing written as complete: "
                         f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    finally:
        stop_workers(pool)
    per_round = pd.DataFrame(rows)
    table = report.with_speedups(report.over_repeats(per_round), s.baseline)
    always = table[table["aggregation"] == "always"]
    tau = report.kendall_tau(always["e2e_s"].tolist(), always["sim_e2e_s"].tolist())
    tau_all = report.kendall_tau(table["e2e_s"].tolist(), table["sim_e2e_s"].tolist())
    resolved = report.resolved_ranking(always)
    table.to_csv(run_dir / "mosaic_table.csv", index=False)
    per_round.to_csv(run_dir / "mosaic_rounds.csv", index=False)
    pd.DataFrame(queries).to_parquet(run_dir / "queries.parquet", index=False)
    prof.validation.to_csv(run_dir / "validation.csv", index=False)
    prof.steps.to_csv(run_dir / "calibration_steps.csv", index=False)
    stage_steps.to_csv(run_dir / "stage_steps.csv", index=False)
    summary = {"table": table.to_dict(orient="records"), "baseline": s.baseline, "kendall_tau_e2e": tau,
               "kendall_tau_e2e_with_bypass": tau_all, "max_abs_err_e2e": float(table["err_e2e"].abs().max()),
               "repeats": s.repeats, "ranking_beyond_noise": resolved,
               "max_spread_e2e": float(table["spread_e2e"].max()),
               "profiling": validation_summary(prof), "profiling_s": profiled_s,
               "stage_step_fit": report.stage_step_fit(stage_steps),
               "wall_s": time.perf_counter() - wall0, "workers": workers,
               "aggregation_mode": "barrier"}
    save_run(run_dir, pd.concat(frames, ignore_index=True), summary, None, metadata)
    if cfg.output.figures and gantt:
        report.gantt_pair(*gantt, run_dir / "mosaic_runtime_gantt.png",
                          f"mosaic ({policy_name} aggregation) on {s.workers} Ray workers")
        report.makespan_figure(table, run_dir / "mosaic_runtime_makespan.png")
    if cfg.output.print_table:
        with pd.option_context("display.width", 250, "display.max_columns", 30):
            print(table[report.SHOWN].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"Kendall tau (simulator vs runtime order of median e2e, aggregation=always): {tau:.2f}; with the "
              f"bypass row: {tau_all:.2f}; largest |error| of the simulated e2e: {summary['max_abs_err_e2e']:.1%}")
        print(report.describe_ranking(resolved, s.repeats, summary["max_spread_e2e"]))
        print(f"results: {run_dir}")
    return summary


def _compare(s, pool, prof, routed, prompts, renderer, policy, policy_name, on_dispatched):
    """s.repeats rounds of every scheduler, the order rotated each round so that drift of the machine over the
    minutes of a run does not always fall on the same scheduler. Returns one row per (round, scheduler,
    aggregation), the requests and queries of every round, every stage's measured engine steps (with the
    calibration's time for each), and the first round's mosaic stages for the Gantt."""
    costs = {e.name: prof.costs[e.name] for e in s.experts}
    agg_costs = {s.aggregator.name: prof.costs[s.aggregator.name]}
    folder_of = {e.name: e.model for e in (*s.experts, s.aggregator)}
    mosaic_cfg = MosaicConfig(**s.placement)

    def ctx_for(kv_bytes):
        return sim_context(prof.calibrations, prof.models, prof.load_s, kv_bytes, s.workers, s.max_num_seqs,
                           s.max_num_batched_tokens)

    env = StageEnv(pool, s.workers, s.worker_memory_gib * 2**30, s.placement_batch_size, folder_of, s.aggregator,
                   s.seed, ctx_for, on_dispatched, recorder=step_recorder(),
                   step_time=step_time_fn(prof.calibrations, prof.models))
    always = make_aggregator("always")
    k = s.experts_per_query
    query_of = {q * k + slot: q for q in range(len(routed)) for slot in range(k)}
    rows, frames, queries, steps, gantt = [], [], [], [], None
    n = len(s.schedulers)
    for rnd in range(s.repeats):
        for name in s.schedulers[rnd % n:] + s.schedulers[:rnd % n]:
            params = {f.name: getattr(mosaic_cfg, f.name) for f in fields(MosaicConfig)} if name == "mosaic" else {}
            stage1 = run_stage(env, name, params, prompts, costs, "expert", query_of)
            answers = expert_answers(routed, stage1)
            variants = [("always", always)] + ([(policy_name, policy)] if name == "mosaic" and policy_name != "always"
                                               else [])
            for agg_name, agg_policy in variants:
                variant = aggregate(env, routed, answers, agg_policy, agg_name, name, params, agg_costs, renderer,
                                    first_id=len(routed) * k)
                rows.append({**report.row(name, agg_name, stage1, variant, len(routed), s.workers), "repeat": rnd})
                for kind, stage in (("expert", stage1 if agg_name == "always" else None),
                                    ("aggregator", variant.stage)):
                    if stage is not None:
                        steps.extend({**r, "scheduler": name, "repeat": rnd, "stage": kind,
                                      "aggregation": agg_name} for r in stage.steps)
                label = f"{DATASET}/{name}/{agg_name}/r{rnd}"
                frames.append(report.requests_frame(routed, stage1, variant, label, answers))
                queries.extend({"dataset": DATASET, "scheduler": name, "aggregation": agg_name, "repeat": rnd,
                                "query_id": q, "skill": rq.question.skill, "experts": ",".join(rq.experts),
                                "expert_answers": ",".join(str(a) for a in answers.answers[q]),
                                "bypass": variant.decisions[q].bypass, "agreement": variant.decisions[q].agreement,
                                "final_answer": variant.final[q], "reference": rq.question.answer,
                                "correct": variant.correct[q]} for q, rq in enumerate(routed))
                if rnd == 0 and name == "mosaic" and (agg_name == policy_name or gantt is None):
                    gantt = (stage1, variant)
            if gantt is None and rnd == 0 and name == s.schedulers[-1]:
                gantt = (stage1, variant)
    return rows, frames, queries, pd.DataFrame(steps), gantt
