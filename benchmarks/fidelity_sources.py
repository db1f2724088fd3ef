"""The fidelity benchmark's sources: each measured configuration of data/validation/ simulated with a given engine
profile, as rows of (source, split, model, gpu, tp, metric, measured, predicted); benchmarks/fidelity.py reports them.
"""
from __future__ import annotations

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
from tessera.results.schema import add_latency_columns
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router, request_frame
from tessera.types import Request, WorkerSpec
from tessera.workload import build_workload
from tessera.workload.frontend import as_client_sees, through_frontend


def load_profile(name: str, **overrides) -> EngineProfile:
    conf = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "engine_profile" / f"{name}.yaml"))
    return EngineProfile.from_dict({**conf, **overrides})


def run_one_worker(requests, model, gpu, tp, profile, scheduler: SchedulerConfig, memory=MemoryConfig(),
                   kv_bytes: float | None = None, on_finish=None):
    """One worker with the profile's costs serving `requests`, each reaching the engine frontend_s after it was sent;
    kv_bytes: a KV pool the source states (None: the simulator's memory rule); on_finish(seq, cluster): Cluster.run's
    callback (a closed-loop client submits its next request there)."""
    spec = WorkerSpec(worker_id=0, gpu=gpu, model=model, tp=tp, kv_bytes_per_gpu=kv_bytes)
    cost = with_engine_profile(lambda **p: make_cost_model("roofline", model, gpu, tp, **p), profile, {})
    cluster = Cluster([spec], lambda s: cost, scheduler, memory, make_router("round_robin"))
    return cluster.run(through_frontend(requests, profile.frontend_s, profile.frontend_serial), on_finish=on_finish)


def simulate(requests, model, gpu, tp, profile, scheduler: SchedulerConfig, memory=MemoryConfig(),
             kv_bytes: float | None = None):
    """Client-side times (the profile's frontend_s included), as experiments/backends/sim.py reports them."""
    return as_client_sees(request_frame(run_one_worker(requests, model, gpu, tp, profile, scheduler, memory,
                                                       kv_bytes)), requests)


def source_table(source: str) -> pd.DataFrame:
    """A validation source's measurements (data/validation/<source>/measurements.csv)."""
    return pd.read_csv(data_path("validation", source, "measurements.csv"))


def simulated(table: pd.DataFrame):
    """The rows a source's simulation covers: all but its excluded ones (each SOURCE.md says why)."""
    return table[table["split"] != "excluded"].itertuples()


def equal_requests(n: int, prompt: int, output: int) -> list[Request]:
    """n requests of `prompt` tokens generating `output`, all sent at t = 0 (a fixed batch or a burst)."""
    return [Request(i, 0.0, prompt, output) for i in range(n)]


def last_finish_s(frame: pd.DataFrame, what: str) -> float:
    """When a batch run's last request finished; every request must have (a rejected one has no finish time and would
    make a throughput look higher than what ran)."""
    unfinished = frame[frame["status"] != "finished"]
    if len(unfinished):
        raise RuntimeError(f"{what}: {len(unfinished)} of {len(frame)} requests did not finish "
                           f"({', '.join(sorted(set(unfinished['status'])))})")
    return float(frame["finish_s"].max())


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
    run = run_one_worker(equal_requests(batch, prompt, output), model, gpu, tp, profile,
                         whole_batch_prefill(batch, prompt))
    return last_finish_s(request_frame(run), f"static batch {batch} x {prompt}/{output} on {model.name}"), \
        run.workers[0].num_iterations


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
        tpot = add_latency_columns(frame)["tpot_s"]  # NaN for one-token outputs, which the median skips
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
# ... and replayed them only while the batch's longest context fits the captured one: vllm/worker/model_runner.py uses
# the graphs when max_context_len <= max_context_len_to_capture, 8192 by default (vllm/entrypoints/llm.py, v0.2.6-0.4.2);
# the profile's graph_max_context applies it per step (tessera/cost/engine_cost.py)
V0_GRAPH_MAX_CONTEXT = 8192
# vllm-project/vllm PR #1440: Llama-2-7B, batch 1, 1.2 s eager for 100 tokens (conf/engine_profile/vllm_v0_eager.yaml)
PR1440_EAGER_STEP_S, PR1440_LAYERS = 1.2 / 100, 32


def late_2023_graphs(profile: EngineProfile) -> EngineProfile:
    """The late-2023 engine (vllm_v0_eager) as of Dec 2023: CUDA graphs for decode batches up to 256 whose longest
    context fits 8,192 tokens (v0.2.6-0.2.7). Profiles without eager host costs (tessera_default) are returned
    unchanged."""
    if profile.host_launch_per_layer_s == 0 and profile.control_per_token_s == 0:
        return profile
    return replace(profile, cuda_graphs=True, graph_sizes=V0_GRAPH_SIZES, graph_max_context=V0_GRAPH_MAX_CONTEXT)


def pr2192_rows(profile: EngineProfile) -> list[dict]:
    """vLLM PR #2192's benchmark_latency batch (data/validation/vllm_pr2192): `batch` prompts sent at once, the
    latency of the whole generate call; simulated with the profile's Dec-2023 variant (late_2023_graphs)."""
    out = []
    for row in simulated(source_table("vllm_pr2192")):
        requests = equal_requests(int(row.batch_size), int(row.input_len), int(row.output_len))
        scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256, max_num_batched_tokens=4096)
        frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), late_2023_graphs(profile),
                         scheduler)
        out.append({"source": "vllm_pr2192", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "e2e", "measured": float(row.latency_s),
                    "predicted": last_finish_s(frame, f"vllm_pr2192 batch {row.batch_size}")})
    return out


def mlc_rows(profile: EngineProfile) -> list[dict]:
    """MLC llm-perf-bench's vLLM column (data/validation/mlc_llm_perf_bench_vllm): benchmark_latency of one prompt of
    input_len tokens generating output_len at batch 1 with the Oct-2023 engine (eager); the latency of the generate
    call is output_len / (tok/s)."""
    out = []
    for row in simulated(source_table("mlc_llm_perf_bench_vllm")):
        batch = int(row.batch_size)
        requests = equal_requests(batch, int(row.input_len), int(row.output_len))
        scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=batch,
                                    max_num_batched_tokens=batch * int(row.input_len))
        frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler)
        out.append({"source": "mlc_llm_perf_bench_vllm", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "e2e", "measured": int(row.output_len) / float(row.tok_per_s),
                    "predicted": last_finish_s(frame, f"mlc_llm_perf_bench_vllm TP {row.tp}")})
    return out


def after_pr2221(profile: EngineProfile, graphs: bool) -> EngineProfile:
    """vLLM v0 after PR #2221 (v0.2.7 on: no Ray control plane per token), with or without its decode graphs, from the
    late-2023 profile; profiles without eager host costs (tessera_default) are returned unchanged."""
    if profile.host_launch_per_layer_s == 0 and profile.control_per_token_s == 0:
        return profile
    return replace(late_2023_graphs(profile) if graphs else profile, control_per_token_s=0.0)


def qwen2_rows(profile: EngineProfile) -> list[dict]:
    """Qwen2's speed benchmark (data/validation/qwen2_speed_vllm042): one prompt of input_len tokens generating
    output_len at batch 1 with vLLM 0.4.2 (after_pr2221: decode graphs unless enforce_eager, each step's replayed only
    while its context fits the captured one) and vLLM's budget without chunked prefill; the generate call's latency is
    output_len / (tok/s)."""
    out = []
    path = data_path("validation", "qwen2_speed_vllm042", "measurements.csv")
    table = source_table("qwen2_speed_vllm042")
    if table["enforce_eager"].dtype != bool:
        raise ValueError(f"{path}: enforce_eager must be True/False in every row")
    for row in simulated(table):
        requests = equal_requests(int(row.batch_size), int(row.input_len), int(row.output_len))
        scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256,
                                    max_num_batched_tokens=max(int(row.max_model_len), 2048))
        memory = MemoryConfig(gpu_memory_utilization=float(row.gpu_memory_utilization))
        engine = after_pr2221(profile, graphs=not row.enforce_eager)
        frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), engine, scheduler, memory)
        out.append({"source": "qwen2_speed_vllm042", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "e2e", "measured": int(row.output_len) / float(row.tok_per_s),
                    "predicted": last_finish_s(frame, f"qwen2_speed_vllm042 {row.model} input {row.input_len}"),
                    "input_len": int(row.input_len)})
    return out


def mixtral_pr_rows(profile: EngineProfile) -> list[dict]:
    """vLLM PRs #2542 / #3240 (data/validation/vllm_mixtral_prs): benchmark_latency's batch of batch_size prompts at
    t = 0 on Mixtral-8x7B with the early-2024 engine (after_pr2221, decode graphs) and a 32,768-token budget; the
    simulated value is the whole generate call."""
    out = []
    scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256, max_num_batched_tokens=32768)
    engine = after_pr2221(profile, graphs=True)
    for row in simulated(source_table("vllm_mixtral_prs")):
        requests = equal_requests(int(row.batch_size), int(row.input_len), int(row.output_len))
        frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), engine, scheduler)
        out.append({"source": "vllm_mixtral_prs", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "e2e", "measured": float(row.latency_s),
                    "predicted": last_finish_s(frame, f"vllm_mixtral_prs batch {row.batch_size}"),
                    "batch_size": int(row.batch_size)})
    return out


def trtllm_static_rows(profile: EngineProfile) -> list[dict]:
    """TensorRT-LLM v0.9.0's static-batch tables (data/validation/trtllm_perf_v090_static): a batch's output tokens/s
    per GPU, and a one-prompt batch's first-token latency, each one static batch (static_batch)."""
    out = []
    for row in simulated(source_table("trtllm_perf_v090_static")):
        batch, tp = int(row.batch_size), int(row.tp)
        latency_s, _ = static_batch(model_spec(row.model), gpu_spec(row.gpu), tp, profile, batch, int(row.input_len),
                                    int(row.output_len))
        if row.metric == "ttft_ms":
            metric, predicted = "ttft", latency_s * 1e3
        else:
            metric, predicted = "throughput", batch * int(row.output_len) / latency_s / tp
        out.append({"source": "trtllm_perf_v090_static", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": tp, "metric": metric, "measured": float(row.measured), "predicted": predicted,
                    "shape": f"{batch} x {int(row.input_len)}/{int(row.output_len)}"})
    return out


def trtllm_perf_rows(profile: EngineProfile) -> list[dict]:
    """TensorRT-LLM v0.11.0's perf overview (data/validation/trtllm_perf_overview_v011), every simulated row."""
    return [trtllm_perf_row(profile, row) for row in simulated(source_table("trtllm_perf_overview_v011"))]


def trtllm_perf_row(profile: EngineProfile, row) -> dict:
    """One row: num_requests equal requests at t = 0 through in-flight batching that reserves each request's whole KV
    (the orca family, as GUARANTEED_NO_EVICT), the engine's max_batch_size / max_num_tokens, 0.99 of the memory for
    KV; output tokens per second of the whole run."""
    scheduler = SchedulerConfig(family="orca", max_num_seqs=int(row.max_batch_size),
                                max_num_batched_tokens=int(row.max_num_tokens), watermark=0.0)
    n, output_len = int(row.num_requests), int(row.output_len)
    run = run_one_worker(equal_requests(n, int(row.input_len), output_len), model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler,
                         MemoryConfig(gpu_memory_utilization=0.99))
    elapsed = last_finish_s(request_frame(run), f"trtllm_perf_overview_v011 {row.model} {row.gpu} TP {row.tp}")
    return {"source": "trtllm_perf_overview_v011", "split": row.split, "model": row.model, "gpu": row.gpu,
            "tp": int(row.tp), "metric": "throughput", "measured": float(row.output_tok_per_s),
            "predicted": n * output_len / elapsed, "shape": f"{int(row.input_len)}/{output_len}"}


def pr2221_row():
    """The fitted row of data/validation/vllm_pr2221 (the fixed run)."""
    return pd.read_csv(data_path("validation", "vllm_pr2221", "measurements.csv")).query("split == 'fitted'").iloc[0]


def pr2221_fixed_run(profile: EngineProfile) -> float:
    """vLLM PR #2221's fixed benchmark (data/validation/vllm_pr2221): 512 prompts of 1031 tokens generating 317, all
    sent at t = 0, Llama-2-70B on 8 x A100-40GB, vLLM v0's scheduler with its then defaults (256 sequences, 4096
    tokens a step). Returns the simulated elapsed time (s)."""
    row = pr2221_row()
    requests = equal_requests(int(row.num_prompts), int(row.input_len), int(row.output_len))
    scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=256, max_num_batched_tokens=4096)
    frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler)
    return float(frame["finish_s"].max())


def vllm_v1_serving_rows(profile: EngineProfile) -> list[dict]:
    """vLLM 0.10.1.1's V1 engine serving N random 1,024 / 1,024 requests sent at once (data/validation/
    vllm_v1_qwen2_a100_serving): mean TPOT and output tok/s, with the logged KV pool and the A100 API server's
    budget; TTFT is not compared (prefix-cache hits, see its SOURCE.md)."""
    out = []
    for row in simulated(source_table("vllm_v1_qwen2_a100_serving")):
        model = model_spec(row.model)
        kv_bytes = int(row.kv_cache_tokens) * model.kv_bytes_per_token
        scheduler = SchedulerConfig(family="vllm_v1", max_num_seqs=int(row.max_num_seqs),
                                    max_num_batched_tokens=int(row.max_num_batched_tokens), chunked_prefill=True)
        requests = equal_requests(int(row.num_prompts), int(row.input_len), int(row.output_len))
        frame = simulate(requests, model, gpu_spec(row.gpu), int(row.tp), profile, scheduler, kv_bytes=kv_bytes)
        finish = last_finish_s(frame, f"vllm_v1_qwen2_a100_serving test {row.test}, {row.num_prompts} prompts")
        tpot = add_latency_columns(frame)["tpot_s"]
        for metric, measured, predicted in (("tpot", row.mean_tpot_ms, float(tpot.mean()) * 1e3),
                                            ("throughput", row.output_tok_per_s,
                                             float(frame["output_tokens"].sum()) / finish)):
            out.append({"source": "vllm_v1_qwen2_a100_serving", "split": row.split, "model": row.model,
                        "gpu": row.gpu, "tp": int(row.tp), "metric": metric, "measured": float(measured),
                        "predicted": predicted, "num_prompts": int(row.num_prompts),
                        "kv_cache_tokens": int(row.kv_cache_tokens)})
    return out


def closed_loop(requests: list[Request], concurrency: int):
    """A client that keeps `concurrency` requests in flight (benchmark_serving's --max-concurrency with request rate
    inf): the first ones sent at t = 0, each later one when a request finishes, in order. Returns the first requests
    and the on_finish callback that sends the rest."""
    pending = iter(requests[concurrency:])

    def send_next(seq, cluster) -> None:
        nxt = next(pending, None)
        if nxt is not None:
            cluster.submit(Request(nxt.request_id, cluster.env.now, nxt.prompt_tokens, nxt.output_tokens))
    return requests[:concurrency], send_next


def qwen3_moe_pr23151_rows(profile: EngineProfile) -> list[dict]:
    """vLLM PR #23151's baseline (data/validation/vllm_v1_qwen3_moe_pr23151): Qwen3-30B-A3B on one H100 serving 100
    random 2,048 / 1,024 requests, 10 in flight (closed_loop); mean TTFT, mean TPOT and output tok/s."""
    if profile.frontend_s:
        raise ValueError(f"engine_profile={profile.name}: the closed-loop client sends requests from the engine's "
                         f"finish callback, which skips frontend_s={profile.frontend_s}; use a profile without one")
    out = []
    for row in simulated(source_table("vllm_v1_qwen3_moe_pr23151")):
        first, send_next = closed_loop(equal_requests(int(row.num_prompts), int(row.input_len), int(row.output_len)),
                                       int(row.max_concurrency))
        scheduler = SchedulerConfig(family="vllm_v1", max_num_seqs=int(row.max_num_seqs),
                                    max_num_batched_tokens=int(row.max_num_batched_tokens), chunked_prefill=True)
        memory = MemoryConfig(gpu_memory_utilization=float(row.gpu_memory_utilization))
        run = run_one_worker(first, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler, memory,
                             on_finish=send_next)
        frame = request_frame(run)
        if len(frame) != int(row.num_prompts):
            raise RuntimeError(f"vllm_v1_qwen3_moe_pr23151: {len(frame)} of {row.num_prompts} requests were sent")
        finish = last_finish_s(frame, "vllm_v1_qwen3_moe_pr23151")
        latency = add_latency_columns(frame)
        for metric, measured, predicted in (("ttft", row.mean_ttft_ms, float(latency["ttft_s"].mean()) * 1e3),
                                            ("tpot", row.mean_tpot_ms, float(latency["tpot_s"].mean()) * 1e3),
                                            ("throughput", row.output_tok_per_s,
                                             float(frame["output_tokens"].sum()) / finish)):
            out.append({"source": "vllm_v1_qwen3_moe_pr23151", "split": row.split, "model": row.model, "gpu": row.gpu,
                        "tp": int(row.tp), "metric": metric, "measured": float(measured), "predicted": predicted})
    return out


def bench_serving_arrivals(num_prompts: int, rate: float, seed: int = 1) -> list[float]:
    """Send times of SGLang's bench_serving at `rate` requests/s (its get_request): the first at 0, then
    np.random.exponential(1 / rate) intervals after np.random.seed(seed) (the client's own seeding, legacy RNG)."""
    state = np.random.RandomState(seed)
    return [0.0] + list(np.cumsum(state.exponential(1.0 / rate, num_prompts - 1)))


def sglang_issue5938_rows(profile: EngineProfile) -> list[dict]:
    """SGLang of May 2025 serving 50 random requests at 10 req/s on one A100 (data/validation/sglang_a100_issue5938):
    output tok/s, with SGLang's prefill-first batches (the vllm_v0 family) and its static memory fraction."""
    out = []
    memory = MemoryConfig(gpu_memory_utilization=0.88, activation_reserve_gib=0.0)
    scheduler = SchedulerConfig(family="vllm_v0", max_num_seqs=2048, max_num_batched_tokens=8192)
    for row in simulated(source_table("sglang_a100_issue5938")):
        arrivals = bench_serving_arrivals(int(row.num_prompts), float(row.request_rate))
        requests = [Request(i, t, int(row.input_len), int(row.output_len)) for i, t in enumerate(arrivals)]
        frame = simulate(requests, model_spec(row.model), gpu_spec(row.gpu), int(row.tp), profile, scheduler, memory)
        finish = last_finish_s(frame, f"sglang_a100_issue5938 {row.gpu} {row.input_len}/{row.output_len}")
        out.append({"source": "sglang_a100_issue5938", "split": row.split, "model": row.model, "gpu": row.gpu,
                    "tp": int(row.tp), "metric": "throughput", "measured": float(row.output_tok_per_s),
                    "predicted": float(frame["output_tokens"].sum()) / finish})
    return out
