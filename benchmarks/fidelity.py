"""Fidelity benchmark: simulate every measured configuration of data/validation/ and print the errors.

Per source, split (fitted / held-out), metric and TP degree: median absolute % error and signed mean % error,
for the matching engine profile and for the plain simulator (tessera_default). `--fit` / `--fit-vllm` redo the
grid searches that fixed the trtllm / vllm_v0_multistep profiles' two constants, on the fitted rows only;
`--fit-control` redoes vllm_v0_eager's control-plane constant on vLLM PR #2221's before / after run.

    .venv/bin/python benchmarks/fidelity.py [--fit | --fit-vllm | --fit-control] [--quick]
"""
from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from tessera.cost import make_cost_model
from tessera.cost.engine_cost import with_engine_profile
from tessera.cost.engine_profile import EngineProfile, expand_sizes
from tessera.hardware import gpu as gpu_spec
from tessera.memory import MemoryConfig
from tessera.models import model as model_spec
from tessera.paths import REPO_ROOT, data_path
from tessera.results import summarize
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router, request_frame
from tessera.types import Request, WorkerSpec
from tessera.workload import build_workload
from tessera.workload.frontend import as_client_sees, through_frontend


def load_profile(name: str, **overrides) -> EngineProfile:
    conf = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "engine_profile" / f"{name}.yaml"))
    return EngineProfile.from_dict({**conf, **overrides})


def run_one_worker(requests, model, gpu, tp, profile, scheduler: SchedulerConfig, memory=MemoryConfig()):
    """One worker with the profile's costs serving `requests`, each reaching the engine frontend_s after it was sent."""
    spec = WorkerSpec(worker_id=0, gpu=gpu, model=model, tp=tp)
    cost = with_engine_profile(lambda **p: make_cost_model("roofline", model, gpu, tp, **p), profile, {})
    cluster = Cluster([spec], lambda s: cost, scheduler, memory, make_router("round_robin"))
    return cluster.run(through_frontend(requests, profile.frontend_s, profile.frontend_serial))


def simulate(requests, model, gpu, tp, profile, scheduler: SchedulerConfig, memory=MemoryConfig()):
    """Client-side times (the profile's frontend_s included), as experiments/backends/sim.py reports them."""
    return as_client_sees(request_frame(run_one_worker(requests, model, gpu, tp, profile, scheduler, memory)),
                          requests)


def whole_batch_prefill(batch: int, prompt: int) -> SchedulerConfig:
    """vLLM v0's prefill-first scheduler with room for `batch` prompts of `prompt` tokens in one step (a fixed batch
    sent at once: one prefill step, then decodes)."""
    return SchedulerConfig(family="vllm_v0", watermark=0.0, max_num_seqs=max(256, batch),
                           max_num_batched_tokens=max(8192, batch * prompt))


def static_batch(model, gpu, tp: int, profile: EngineProfile, batch: int, prompt: int, output: int
                 ) -> tuple[float, int]:
    """TensorRT-LLM's static batching: `batch` equal requests at t = 0, one context step for all of them (the token
    budget holds the whole batch), then decodes. Returns the batch's latency from its send (s; the profile's
    frontend_s included) and the engine iterations."""
    run = run_one_worker([Request(i, 0.0, prompt, output) for i in range(batch)], model, gpu, tp, profile,
                         whole_batch_prefill(batch, prompt))
    return float(request_frame(run)["finish_s"].max()), run.workers[0].num_iterations


# ------------------------------------------------------------------------------------------------- sources
def nemo_rows(profile: EngineProfile) -> list[dict]:
    """NeMo/TensorRT-LLM fixed batches: B requests at t = 0, the batch's latency and sentences/s."""
    table = pd.read_csv(data_path("validation", "nemo_trtllm_llama2", "measurements.csv"))
    table = table[table["split"] != "excluded"]  # see its SOURCE.md: rows that cannot be what the page says
    out = []
    for row in table.itertuples():
        e2e_s, _ = static_batch(model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, int(row.batch_size),
                                int(row.prompt_tokens), int(row.output_tokens))
        e2e_ms = e2e_s * 1e3
        for metric, measured, predicted in (("e2e", row.e2e_ms, e2e_ms),
                                            ("throughput", row.throughput_req_s, row.batch_size / e2e_ms * 1e3)):
            out.append({"source": "nemo_trtllm_llama2", "split": row.split, "model": row.model, "gpu": row.gpu,
                        "tp": int(row.tp), "metric": metric, "measured": float(measured), "predicted": predicted})
    return out


def bench_table(splits=("fitted",)) -> pd.DataFrame:
    table = pd.read_csv(data_path("validation", "llm_inference_bench_trtllm", "measurements.csv"))
    return table[table["split"].isin(splits)]


def bench_rows(profile: EngineProfile, splits=("fitted",)) -> list[dict]:
    """LLM-Inference-Bench (TensorRT-LLM 0.11, A100 and H100): static batches of L-token prompts generating L tokens,
    the batch's latency. Rows whose KV cache cannot fit the GPU are excluded (see its SOURCE.md)."""
    out = []
    for row in bench_table(splits).itertuples():
        e2e_s, _ = static_batch(model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, int(row.batch_size),
                                int(row.prompt_tokens), int(row.output_tokens))
        out.append({"source": "llm_inference_bench_trtllm", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "e2e", "measured": float(row.e2e_s), "predicted": e2e_s})
    return out


def flexicache_rows(profile: EngineProfile, num_requests: int | None = None) -> list[dict]:
    """Stock vLLM v1 (Triton attention) online serving on an H100 NVL: mean TPOT at 0.4 req/s."""
    row = next(pd.read_csv(data_path("validation", "flexicache_vllm_v1", "measurements.csv")).itertuples())
    reqs = build_workload({"kind": "synthetic", "num_requests": num_requests or int(row.num_requests), "seed": 0,
                           "arrival": {"kind": "poisson", "rate": float(row.rate_per_s)},
                           "lengths": {"kind": "uniform", "prompt_tokens": [int(row.prompt_min), int(row.prompt_max)],
                                       "output_tokens": [int(row.output_min), int(row.output_max)]}})
    scheduler = SchedulerConfig(max_num_seqs=int(row.max_num_seqs),
                                max_num_batched_tokens=int(row.max_num_batched_tokens))
    frame = simulate(reqs, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler,
                     MemoryConfig(gpu_memory_utilization=float(row.gpu_memory_utilization)))
    tpot_ms = summarize(frame)["tpot_s"]["mean"] * 1e3
    return [{"source": "flexicache_vllm_v1", "split": row.split, "model": row.model, "gpu": row.gpu, "tp": int(row.tp),
             "metric": "tpot", "measured": float(row.tpot_mean_ms), "predicted": tpot_ms}]


# The Lambda runs' multi-step group: their inter-token latency is ~10x their TPOT, tokens reaching the client in
# chunks of ~10 steps (data/validation/lambda_vllm_sharegpt/SOURCE.md: --num-scheduler-steps 10, inferred).
LAMBDA_SCHEDULER_STEPS = 10


def lambda_rows(profile: EngineProfile, splits=("fitted", "held_out")) -> list[dict]:
    """vLLM 0.6 (multi-step) serving 10 or 80 ShareGPT prompts sent at once: median TTFT, median TPOT, output tok/s.

    Each row replays its own measured prompt and output lengths (an empty output counts as one token: the
    request was prefilled). TTFT and throughput of the Mixtral rows are left out: every one of them has a
    ~1.7 s TTFT, 10-30x the dense models', which no step cost explains (see its SOURCE.md).
    """
    table = pd.read_csv(data_path("validation", "lambda_vllm_sharegpt", "measurements.csv"))
    scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256, max_num_batched_tokens=2048,
                                num_scheduler_steps=LAMBDA_SCHEDULER_STEPS)
    memory = MemoryConfig(gpu_memory_utilization=0.95)
    out = []
    for row in table[table["split"].isin(splits)].itertuples():
        prompts = [int(x) for x in row.input_lens.split()]
        outputs = [max(1, int(x)) for x in row.output_lens.split()]
        reqs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate(zip(prompts, outputs))]
        frame = simulate(reqs, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler, memory)
        multi = frame[frame["output_tokens"] > 1]
        tpot = (multi["finish_s"] - multi["first_token_s"]) / (multi["output_tokens"] - 1)
        metrics = [("tpot", row.median_tpot_ms, float(tpot.median()) * 1e3)]
        if row.model != "Mixtral-8x7B":
            metrics += [("ttft", row.median_ttft_ms, float(frame["first_token_s"].median()) * 1e3),
                        ("throughput", row.output_throughput_tok_s,
                         sum(int(x) for x in row.output_lens.split()) / float(frame["finish_s"].max()))]
        for metric, measured, predicted in metrics:
            out.append({"source": "lambda_vllm_sharegpt", "split": row.split, "model": row.model, "gpu": row.gpu,
                        "tp": int(row.tp), "metric": metric, "measured": float(measured), "predicted": predicted})
    return out


def splitwise_table() -> pd.DataFrame:
    """The Splitwise artifact's points, each the median of its 5 repeats."""
    table = pd.read_csv(data_path("validation", "splitwise_perf_model", "measurements.csv"))
    keys = ["model", "gpu", "tp", "batch_size", "prompt_tokens", "output_tokens", "split", "prompt_time_split"]
    return table.groupby(keys, as_index=False)[["prompt_time_ms", "token_time_ms", "e2e_time_ms"]].median()


def splitwise_rows(profile: EngineProfile) -> list[dict]:
    """Splitwise's per-phase times (Llama-2-70B TP 2/4/8 and BLOOM-176B TP 8 on DGX-A100 / DGX-H100): a batch of
    equal requests at t = 0, its prompt phase (TTFT of the batch) and its mean decode iteration (TPOT). A run that
    stopped before the asked output length (its e2e time says so) is simulated for the tokens it generated."""
    out = []
    for row in splitwise_table().itertuples():
        batch, prompt = int(row.batch_size), int(row.prompt_tokens)
        generated = min(int(row.output_tokens),
                        1 + round((row.e2e_time_ms - row.prompt_time_ms) / row.token_time_ms))
        frame = simulate([Request(i, 0.0, prompt, generated) for i in range(batch)], model_spec(row.model),
                         gpu_spec(row.gpu), int(row.tp), profile, whole_batch_prefill(batch, prompt))
        tpot = ((frame["finish_s"] - frame["first_token_s"]) / (generated - 1)).median() * 1e3
        metrics = [("tpot", row.split, row.token_time_ms, tpot),
                   ("ttft", row.prompt_time_split, row.prompt_time_ms, frame["first_token_s"].max() * 1e3)]
        for metric, split, measured, predicted in metrics:
            if split != "excluded":
                out.append({"source": "splitwise_perf_model", "split": split, "model": row.model, "gpu": row.gpu,
                            "tp": int(row.tp), "metric": metric, "measured": float(measured),
                            "predicted": float(predicted)})
    return out


# The decode graph sizes vLLM captured from v0.2.6 on (vllm/worker/model_runner.py _BATCH_SIZES_TO_CAPTURE, the same
# list through v0.6 and conf/engine_profile/vllm_v0_multistep.yaml): [1, 2, 4] + [8 * i for i in range(1, 33)]
V0_GRAPH_SIZES = tuple(expand_sizes([1, 2, 4, {"start": 8, "stop": 256, "step": 8}]))
# vllm-project/vllm PR #1440: Llama-2-7B, batch 1, 1.2 s eager for 100 tokens (conf/engine_profile/vllm_v0_eager.yaml)
PR1440_EAGER_STEP_S, PR1440_LAYERS = 1.2 / 100, 32


def late_2023_graphs(profile: EngineProfile) -> EngineProfile:
    """The late-2023 engine (vllm_v0_eager) as of Dec 2023: CUDA graphs for decode batches up to 256 (v0.2.6-0.2.7).
    Profiles without eager host costs (tessera_default) are returned unchanged."""
    if profile.host_launch_per_layer_s == 0 and profile.control_per_token_s == 0:
        return profile
    return replace(profile, cuda_graphs=True, graph_sizes=V0_GRAPH_SIZES)


def pr2192_rows(profile: EngineProfile) -> list[dict]:
    """vLLM PR #2192's benchmark_latency batch (data/validation/vllm_pr2192): `batch` prompts sent at once, the
    latency of the whole generate call; simulated with the profile's Dec-2023 variant (late_2023_graphs)."""
    out = []
    table = pd.read_csv(data_path("validation", "vllm_pr2192", "measurements.csv"))
    for row in table[table["split"] != "excluded"].itertuples():
        requests = [Request(i, 0.0, int(row.input_len), int(row.output_len)) for i in range(int(row.batch_size))]
        scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256, max_num_batched_tokens=4096)
        frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), late_2023_graphs(profile),
                         scheduler)
        out.append({"source": "vllm_pr2192", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "e2e", "measured": float(row.latency_s),
                    "predicted": float(frame["finish_s"].max())})
    return out


# ------------------------------------------------------------------------------------------------- report
def error_table(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    err = (rows["predicted"] - rows["measured"]) / rows["measured"] * 100
    rows = rows.assign(abs_err=err.abs(), err=err)
    return rows.groupby(by).agg(n=("err", "size"), median_abs_pct=("abs_err", "median"),
                                signed_mean_pct=("err", "mean")).round(1)


def run_all(quick: bool) -> pd.DataFrame:
    frames = []
    for label, nemo_profile, flexi_profile, lambda_profile, splitwise_profile in (
            ("engine profile", load_profile("trtllm"), load_profile("vllm_v1_cudagraph", attention_backend="triton"),
             load_profile("vllm_v0_multistep"), load_profile("vllm_v0_eager")),
            ("tessera_default", load_profile("tessera_default"), load_profile("tessera_default"),
             load_profile("tessera_default"), load_profile("tessera_default"))):
        rows = (bench_rows(nemo_profile) + nemo_rows(nemo_profile)
                + flexicache_rows(flexi_profile, 100 if quick else None) + lambda_rows(lambda_profile)
                + splitwise_rows(splitwise_profile) + pr2192_rows(splitwise_profile))
        frames.append(pd.DataFrame(rows).assign(profile=label))
    return pd.concat(frames, ignore_index=True)


def fit_trtllm() -> None:
    """The trtllm profile's hbm_fraction x cpu_fixed_s on the FITTED rows only: LLM-Inference-Bench's TensorRT-LLM
    static batches on two GPU generations (A100-40GB, H100), which tell a bandwidth term from a fixed one. A static
    batch's shapes do not depend on timing, so its latency is linear in cpu_fixed_s: each hbm_fraction is simulated
    once at cpu_fixed_s = 0 and every cpu_fixed_s adds iterations x cpu_fixed_s."""
    base = load_profile("trtllm")
    table = bench_table(("fitted",))
    measured = table["e2e_s"].to_numpy(float)
    best = None
    for hbm in np.arange(0.50, 1.0001, 0.025):
        profile = replace(base, hbm_fraction=round(float(hbm), 3), cpu_fixed_s=0.0, allreduce_floor_s=0.0)
        sims = [static_batch(model_spec(r.model), gpu_spec(r.gpu), int(r.tp), profile, int(r.batch_size),
                             int(r.prompt_tokens), int(r.output_tokens)) for r in table.itertuples()]
        e2e0 = np.array([e for e, _ in sims])
        iters = np.array([n for _, n in sims], dtype=float)
        for cpu_ms in np.arange(0.0, 6.001, 0.05):
            err = np.abs(e2e0 + iters * cpu_ms * 1e-3 - measured) / measured
            score = float(np.median(err) * 100)
            if best is None or score < best[0]:
                best = (score, float(hbm), float(cpu_ms), float(np.mean(err) * 100))
    print(f"best on the fitted rows ({len(table)} static batches, e2e): hbm_fraction = {best[1]:.3f}, "
          f"cpu_fixed_s = {best[2]:.2f} ms, allreduce_floor_s = 0; median |error| {best[0]:.1f}% "
          f"(mean {best[3]:.1f}%)")


def fit_vllm_multistep() -> None:
    """The vllm_v0_multistep profile's constants on the FITTED rows only (the Llama-3-8B rows of the Lambda source,
    simulated with multi-step groups of LAMBDA_SCHEDULER_STEPS): cpu_fixed_s x allreduce_floor_s by a grid search
    on median TPOT; frontend_s as the median TTFT the steps leave unexplained. For comparison (not adopted), the
    best serial frontend (frontend_serial: requests handed to the engine one at a time) on the same rows."""
    base = load_profile("vllm_v0_multistep")

    def score(profile, metric):
        rows = pd.DataFrame(lambda_rows(profile, splits=("fitted",)))
        rows = rows[rows["metric"] == metric]
        return float(((rows["predicted"] - rows["measured"]).abs() / rows["measured"]).mean() * 100)

    best = min((score(replace(base, cpu_fixed_s=cpu_ms * 1e-3, allreduce_floor_s=floor_us * 1e-6), "tpot"),
                cpu_ms, floor_us)
               for cpu_ms, floor_us in itertools.product(np.arange(0.0, 2.01, 0.1), np.arange(0.0, 40.1, 2.5)))
    print(f"best on the fitted rows (tpot): cpu_fixed_s = {best[1]:.2f} ms, "
          f"allreduce_floor_s = {best[2]:.1f} us, mean |error| {best[0]:.1f}%")
    # frontend_s does not change TPOT; it is the median TTFT the steps leave unexplained on the same fitted rows
    fitted = replace(base, cpu_fixed_s=best[1] * 1e-3, allreduce_floor_s=best[2] * 1e-6, frontend_s=0.0)
    rows = pd.DataFrame(lambda_rows(fitted, splits=("fitted",)))
    gaps = (rows.loc[rows["metric"] == "ttft", "measured"] - rows.loc[rows["metric"] == "ttft", "predicted"])
    print(f"frontend_s on the fitted rows: median TTFT gap {gaps.median():.1f} ms over {len(gaps)} rows "
          f"(range {gaps.min():.1f}-{gaps.max():.1f} ms); mean |TTFT error| with it "
          f"{score(replace(fitted, frontend_s=round(gaps.median(), 1) * 1e-3), 'ttft'):.1f}%")
    serial = min((score(replace(fitted, frontend_s=ms * 1e-3, frontend_serial=True), "ttft"), ms)
                 for ms in np.arange(0.25, 20.01, 0.25))
    print(f"not adopted: the best serial frontend, {serial[1]:.2f} ms per request, mean |TTFT error| {serial[0]:.1f}%")


def pr2221_row():
    """The fitted row of data/validation/vllm_pr2221 (the fixed run)."""
    return pd.read_csv(data_path("validation", "vllm_pr2221", "measurements.csv")).query("split == 'fitted'").iloc[0]


def pr2221_fixed_run(profile: EngineProfile) -> float:
    """vLLM PR #2221's fixed benchmark (data/validation/vllm_pr2221): 512 prompts of 1031 tokens generating 317, all
    sent at t = 0, Llama-2-70B on 8 x A100-40GB, vLLM v0's scheduler with its then defaults (256 sequences, 4096
    tokens a step). Returns the simulated elapsed time (s)."""
    row = pr2221_row()
    requests = [Request(i, 0.0, int(row.input_len), int(row.output_len)) for i in range(int(row.num_prompts))]
    scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256, max_num_batched_tokens=4096)
    frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler)
    return float(frame["finish_s"].max())


def fit_control() -> None:
    """vllm_v0_eager's two constants from PR #2221's fixed run (data/validation/vllm_pr2221), each exact in one step
    because the steps do not depend on their durations (every request arrives at t = 0), so the run's time is linear
    in either constant:
    - cpu_per_seq_s: the engine after the PR (v0.2.7: CUDA graphs for decode batches up to 256, no Ray control
      cost) must take the measured time;
    - control_per_token_s: the engine before it must take the measured before - after difference longer.
    Then host_launch_per_layer_s follows from PR #1440's eager step less the step's CPU time."""
    row = pr2221_row()
    after_s, before_s = row.num_prompts / row.after_req_per_s, row.num_prompts / row.before_req_per_s
    probe = 1e-6
    after = replace(late_2023_graphs(load_profile("vllm_v0_eager")), cpu_per_seq_s=0.0, control_per_token_s=0.0)
    t0 = pr2221_fixed_run(after)
    per_seq = (after_s - t0) / ((pr2221_fixed_run(replace(after, cpu_per_seq_s=probe)) - t0) / probe)
    after = replace(after, cpu_per_seq_s=per_seq)
    t_after = pr2221_fixed_run(after)
    probe = 1e-8
    control = (before_s - after_s) / ((pr2221_fixed_run(replace(after, control_per_token_s=probe)) - t_after) / probe)
    t_before = pr2221_fixed_run(replace(after, control_per_token_s=control))
    print(f"PR #2221 fixed run (measured: after {after_s:.1f} s, before {before_s:.1f} s):")
    print(f"  cpu_per_seq_s = {per_seq:.4g} s (the engine after the PR simulates {t_after:.1f} s; without it "
          f"{t0:.1f} s)")
    print(f"  control_per_token_s = {control:.4g} s per token per worker (the engine before the PR simulates "
          f"{t_before:.1f} s)")
    host = (PR1440_EAGER_STEP_S - after.cpu_fixed_s - per_seq) / PR1440_LAYERS
    print(f"  host_launch_per_layer_s = {host:.6g} s (PR #1440: ({PR1440_EAGER_STEP_S * 1e3:.1f} ms - "
          f"{after.cpu_fixed_s * 1e3:.1f} ms - {per_seq * 1e3:.3f} ms) / {PR1440_LAYERS} layers)")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="redo the trtllm profile's grid search and stop")
    parser.add_argument("--fit-vllm", action="store_true", help="redo the vllm_v0_multistep grid search and stop")
    parser.add_argument("--fit-control", action="store_true",
                        help="redo vllm_v0_eager's control_per_token_s fit on vLLM PR #2221 and stop")
    parser.add_argument("--quick", action="store_true", help="100 instead of 500 requests for the online source")
    args = parser.parse_args()
    if args.fit:
        fit_trtllm()
        return
    if args.fit_vllm:
        fit_vllm_multistep()
        return
    if args.fit_control:
        fit_control()
        return
    start = time.perf_counter()
    rows = run_all(args.quick)
    pd.set_option("display.width", 160)
    print("Per source, split and metric (error = (simulated - measured) / measured):")
    print(error_table(rows, ["profile", "source", "split", "metric"]).to_string())
    print("\nPer source and TP degree:")
    print(error_table(rows, ["profile", "source", "split", "metric", "tp"]).to_string())
    held_out = rows[(rows["split"] == "held_out") & (rows["profile"] == "engine profile")]
    print("\nHeld-out rows of the engine profiles per model, GPU and TP degree:")
    print(error_table(held_out, ["source", "metric", "model", "gpu", "tp"]).to_string())
    print("\nOverall:")
    print(error_table(rows, ["profile", "split", "metric"]).to_string())
    print(f"\n{len(rows) // 2} measurements per profile, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
