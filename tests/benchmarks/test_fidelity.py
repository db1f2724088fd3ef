"""The validation set and the fidelity benchmark: sources are documented and self-consistent, fits stay apart."""
import pandas as pd
import pytest

from dataclasses import replace

from benchmarks.fidelity_sources import (after_pr2221, bench_table, lambda_rows, last_finish_s, late_2023_graphs,
                                         load_profile, mixtral_pr_rows, mlc_rows, pr2192_rows, pr2221_fixed_run,
                                         qwen2_rows, source_table, splitwise_rows, splitwise_table, static_batch,
                                         trtllm_perf_row, trtllm_static_rows, vllm_v1_serving_rows, closed_loop,
                                         qwen3_moe_pr23151_rows, run_one_worker, bench_serving_arrivals,
                                         sglang_issue5938_rows)
from tessera.hardware import gpu
from tessera.models import model
from tessera.paths import data_path
from tessera.types import Request

SOURCES = ("nemo_trtllm_llama2", "flexicache_vllm_v1", "lambda_vllm_sharegpt", "llm_inference_bench_trtllm",
           "splitwise_perf_model", "vllm_pr2221", "vllm_pr2192", "mlc_llm_perf_bench_vllm",
           "qwen2_speed_vllm042", "vllm_mixtral_prs",
           "trtllm_perf_overview_v011", "trtllm_perf_v090_static", "vllm_v1_qwen2_a100_serving",
           "vllm_v1_qwen3_moe_pr23151", "sglang_a100_issue5938")


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_has_a_source_note_and_known_splits(source):
    folder = data_path("validation", source)
    assert (folder / "SOURCE.md").read_text().strip()
    table = pd.read_csv(folder / "measurements.csv")
    assert set(table["split"]) <= {"fitted", "held_out", "excluded"}
    assert table["split"].isin(["fitted", "held_out"]).any()


def test_the_trtllm_profile_is_fitted_on_one_source_and_held_out_on_another():
    nemo = pd.read_csv(data_path("validation", "nemo_trtllm_llama2", "measurements.csv"))
    assert set(nemo["split"]) == {"held_out", "excluded"}
    bench = pd.read_csv(data_path("validation", "llm_inference_bench_trtllm", "measurements.csv"))
    assert set(bench["split"]) == {"fitted", "excluded"}
    assert set(bench.loc[bench["split"] == "fitted", "gpu"]) == {"A100-SXM-40GB", "H100-SXM-80GB"}  # 2 generations


def test_bench_rows_excluded_exactly_where_the_kv_cache_cannot_hold_the_batch():
    # the rule of its SOURCE.md, recomputed: KV of batch x 2L tokens per GPU vs 0.9 x (memory - weights / TP)
    bench = pd.read_csv(data_path("validation", "llm_inference_bench_trtllm", "measurements.csv"))
    for row in bench.itertuples():
        m, g = model(row.model), gpu(row.gpu)
        kv = m.kv_bytes_per_token / row.tp * row.batch_size * (row.prompt_tokens + row.output_tokens)
        fits = kv <= 0.9 * (g.hbm_bytes - m.weight_bytes / row.tp)
        assert (row.split == "fitted") == fits, row


def test_a_static_batch_is_linear_in_the_fixed_cpu_time():
    # what --fit relies on: same shapes whatever the step times, so latency = latency(0) + iterations x cpu_fixed_s
    row = next(bench_table().itertuples())
    m, g = model(row.model), gpu(row.gpu)
    zero = replace(load_profile("trtllm"), cpu_fixed_s=0.0, allreduce_floor_s=0.0)
    e0, n0 = static_batch(m, g, row.tp, zero, row.batch_size, row.prompt_tokens, row.output_tokens)
    e1, n1 = static_batch(m, g, row.tp, replace(zero, cpu_fixed_s=0.003), row.batch_size, row.prompt_tokens,
                          row.output_tokens)
    assert n0 == n1 == row.output_tokens  # one context step, then output - 1 decodes
    assert e1 == pytest.approx(e0 + n0 * 0.003, rel=1e-12)


def test_lambda_rows_are_transcribed_consistently():
    # Output throughput is the sum of the stored output lengths over the run's duration, as benchmark_serving.py
    # computes it: a mistyped length, duration or throughput breaks the identity.
    table = pd.read_csv(data_path("validation", "lambda_vllm_sharegpt", "measurements.csv"))
    for row in table.itertuples():
        inputs, outputs = row.input_lens.split(), row.output_lens.split()
        assert len(inputs) == len(outputs) == row.num_prompts
        total = sum(int(x) for x in outputs)
        assert total / row.duration_s == pytest.approx(row.output_throughput_tok_s, rel=2e-3), row.file


def test_lambda_fitted_and_held_out_rows_are_different_models():
    table = pd.read_csv(data_path("validation", "lambda_vllm_sharegpt", "measurements.csv"))
    fitted = set(table.loc[table["split"] == "fitted", "model"])
    held_out = set(table.loc[table["split"] == "held_out", "model"])
    assert fitted and held_out and not fitted & held_out


def test_lambda_source_simulates_only_the_requested_split():
    rows = lambda_rows(load_profile("vllm_v0_multistep"), splits=("fitted",))
    assert rows and {r["split"] for r in rows} == {"fitted"}
    assert {r["metric"] for r in rows} == {"tpot", "ttft", "throughput"}
    assert all(r["predicted"] > 0 for r in rows)


def test_splitwise_rows_are_consistent_and_held_out():
    # 5 repeats of each point (15 of the point all three sweeps share: batch 1, prompt 512, output 128); where a
    # short run cannot have stopped early or queued (128 tokens out, batch <= 16), e2e = prompt + 127 iterations
    raw = pd.read_csv(data_path("validation", "splitwise_perf_model", "measurements.csv"))
    assert set(raw["split"]) == {"held_out"} and raw["source_line"].is_unique
    assert set(raw.loc[raw["prompt_time_split"] == "excluded", "batch_size"]) == {64}
    table = splitwise_table()
    shared = (table["batch_size"] == 1) & (table["prompt_tokens"] == 512) & (table["output_tokens"] == 128)
    assert len(raw) == 5 * len(table) + 10 * shared.sum() and shared.sum() == 8  # one per (model, GPU, TP)
    short = table[(table["output_tokens"] == 128) & (table["batch_size"] <= 16)]
    implied = short["prompt_time_ms"] + (short["output_tokens"] - 1) * short["token_time_ms"]
    assert ((implied - short["e2e_time_ms"]).abs() / short["e2e_time_ms"]).max() < 0.02


def test_splitwise_rows_simulate_both_phases_of_every_point():
    rows = splitwise_rows(load_profile("vllm_v0_eager"))
    table = splitwise_table()
    tpot = [r for r in rows if r["metric"] == "tpot"]
    ttft = [r for r in rows if r["metric"] == "ttft"]
    assert len(tpot) == len(table) and len(ttft) == (table["prompt_time_split"] != "excluded").sum()
    assert all(r["predicted"] > 0 and r["split"] == "held_out" for r in rows)


def test_vllm_v0_eager_reproduces_the_pr2221_run_it_was_fitted_to():
    # its two fitted constants, put back: the engine after the PR (CUDA graphs, no Ray control cost) takes the
    # measured 512 / 3.48 s, the engine before it (Ray control cost) 512 / 2.48 s; a retyped constant breaks this
    eager = load_profile("vllm_v0_eager")
    after = replace(late_2023_graphs(eager), control_per_token_s=0.0)
    assert pr2221_fixed_run(after) == pytest.approx(512 / 3.48, rel=1e-3)
    assert pr2221_fixed_run(replace(after, control_per_token_s=eager.control_per_token_s)) == pytest.approx(
        512 / 2.48, rel=1e-3)


def test_the_pr2221_source_is_fitted_and_splitwise_stays_held_out():
    pr = pd.read_csv(data_path("validation", "vllm_pr2221", "measurements.csv"))
    assert set(pr["split"]) == {"fitted", "excluded"} and set(pr["model"]) == {"Llama-2-70B"}
    splitwise = pd.read_csv(data_path("validation", "splitwise_perf_model", "measurements.csv"))
    assert set(splitwise["split"]) == {"held_out"}


def test_the_pr2192_batch_is_held_out_and_simulated_with_the_dec_2023_engine():
    eager = load_profile("vllm_v0_eager")
    late = late_2023_graphs(eager)
    assert late.cuda_graphs and late.graph_sizes[-1] == 256 and late.control_per_token_s == eager.control_per_token_s
    assert late_2023_graphs(load_profile("tessera_default")) == load_profile("tessera_default")
    rows = pr2192_rows(eager)
    assert [(r["split"], r["metric"], r["measured"]) for r in rows] == [("held_out", "e2e", 16.37)]
    assert rows[0]["predicted"] == pytest.approx(19.59, abs=0.01)  # docs/fidelity.md: +19.6%


def test_the_mlc_rows_are_held_out_eager_batch_one_runs_on_pcie_a100s():
    table = pd.read_csv(data_path("validation", "mlc_llm_perf_bench_vllm", "measurements.csv"))
    held = table[table["split"] == "held_out"]
    assert set(held["gpu"]) == {"A100-PCIe-80GB"} and sorted(held["tp"]) == [2, 4, 8]
    assert table.loc[table["split"] == "excluded", "why"].str.len().gt(0).all()  # every exclusion says why
    eager = load_profile("vllm_v0_eager")
    assert not eager.cuda_graphs  # the Oct-2023 commit predates vLLM's CUDA graphs
    rows = mlc_rows(eager)
    assert [(r["tp"], r["metric"]) for r in rows] == [(2, "e2e"), (4, "e2e"), (8, "e2e")]
    assert rows[0]["measured"] == pytest.approx(256 / 15.27)  # the generate call: output_len / (tok/s)
    # every one of the 255 decode steps costs at least the eager host floor of 80 layers, whatever the TP degree
    floor = 255 * model("Llama-2-70B").num_layers * eager.host_launch_per_layer_s
    assert all(r["predicted"] > floor for r in rows)
    assert rows[1]["predicted"] == pytest.approx(7.146, abs=0.01)  # docs/fidelity.md: -50.8% at TP 4


def test_the_qwen2_rows_run_vllm_042_as_the_late_2023_profile_without_its_ray_control_plane():
    eager, default = load_profile("vllm_v0_eager"), load_profile("tessera_default")
    graphed, plain = after_pr2221(eager, graphs=True), after_pr2221(eager, graphs=False)
    assert graphed.control_per_token_s == plain.control_per_token_s == 0.0 < eager.control_per_token_s
    assert graphed.cuda_graphs and not plain.cuda_graphs and graphed.cpu_per_seq_s == eager.cpu_per_seq_s
    assert after_pr2221(default, graphs=True) == default
    table = pd.read_csv(data_path("validation", "qwen2_speed_vllm042", "measurements.csv"))
    held = table[table["split"] == "held_out"]
    assert (held["input_len"] <= held["max_model_len"]).all()  # longer inputs ran with an unstated setting
    assert (table.loc[table["split"] == "excluded", "input_len"] > 32768).all()
    rows = qwen2_rows(eager)
    assert len(rows) == len(held) == 9 and {r["metric"] for r in rows} == {"e2e"}
    assert rows[0]["measured"] == pytest.approx(2048 / 80.45)  # the generate call: output_len / (tok/s)
    by = {(r["model"], r["tp"], r["input_len"]): r["predicted"] for r in rows}
    # the same 2,048 steps take longer the longer the context they attend over
    assert by[("Qwen2-7B-Instruct", 1, 1)] < by[("Qwen2-7B-Instruct", 1, 14336)] < by[("Qwen2-7B-Instruct", 1, 30720)]
    assert by[("Qwen2-72B-Instruct", 4, 1)] == pytest.approx(53.61, abs=0.01)  # docs/fidelity.md: -21.4%


def test_the_vllm_v1_serving_rows_use_the_logged_kv_pool_and_compare_tpot_and_throughput_only():
    table = source_table("vllm_v1_qwen2_a100_serving")
    assert (table.loc[table["split"] == "excluded", "successful_requests"]
            < table.loc[table["split"] == "excluded", "num_prompts"]).all()  # failed requests: the 1,000-prompt rows
    held = table[table["split"] == "held_out"]
    assert (held["successful_requests"] == held["num_prompts"]).all() and len(held) == 18
    # the logged KV pool in tokens, 57,344 B each, is the logged GiB (whole 16-token blocks)
    kv = model("Qwen2-7B-Instruct").kv_bytes_per_token
    assert abs(464848 * kv / 2**30 - 24.83) < 0.01 and abs(93872 * kv / 2**30 - 5.01) < 0.01
    rows = vllm_v1_serving_rows(load_profile("vllm_v1_cudagraph"))
    assert len(rows) == 2 * len(held) and {r["metric"] for r in rows} == {"tpot", "throughput"}
    by = {(r["kv_cache_tokens"], r["num_prompts"], r["metric"]): r["predicted"] for r in rows}
    # the small pool preempts: beyond ~45 requests of 2,048 tokens its throughput stops growing, the large one's not
    assert by[(93872, 200, "throughput")] < 0.6 * by[(464848, 200, "throughput")]
    assert by[(93872, 10, "tpot")] == pytest.approx(by[(464848, 10, "tpot")])  # 10 x 2,048 fits both pools
    assert by[(464848, 1, "tpot")] == pytest.approx(10.20, abs=0.01)  # docs/fidelity.md: -13.2%


def test_a_closed_loop_client_keeps_its_concurrency_in_flight():
    from tessera.scheduling import SchedulerConfig
    from tessera.sim import request_frame
    first, send_next = closed_loop([Request(i, 0.0, 64, 8) for i in range(7)], 3)
    assert [r.request_id for r in first] == [0, 1, 2]
    run = run_one_worker(first, model("Llama-3-8B"), gpu("H100-SXM-80GB"), 1, load_profile("tessera_default"),
                         SchedulerConfig(), on_finish=send_next)
    frame = request_frame(run).sort_values("request_id")
    assert list(frame["request_id"]) == list(range(7))
    for t in frame["arrival_s"]:  # never more than 3 sent and unfinished at once
        assert ((frame["arrival_s"] <= t) & (frame["finish_s"] > t)).sum() <= 3
    later = frame[frame["request_id"] >= 3]
    assert set(later["arrival_s"]) <= set(frame["finish_s"])  # each later one sent when one finished


def test_the_pr23151_row_is_the_stock_column_simulated_closed_loop():
    table = source_table("vllm_v1_qwen3_moe_pr23151")
    assert len(table) == 1 and table["column"].iloc[0].startswith("WO tuned configs")  # the PR's change is not used
    rows = qwen3_moe_pr23151_rows(load_profile("vllm_v1_cudagraph"))
    assert [r["metric"] for r in rows] == ["ttft", "tpot", "throughput"]
    assert rows[1]["predicted"] == pytest.approx(16.99, abs=0.01)  # docs/fidelity.md: +28.9%
    with pytest.raises(ValueError, match="frontend_s"):
        qwen3_moe_pr23151_rows(load_profile("vllm_v0_multistep"))


def test_bench_serving_arrivals_are_sglangs_seeded_poisson_draws():
    import numpy as np
    state = np.random.get_state()
    try:
        np.random.seed(1)  # what bench_serving does; its length draws (range ratio 1) consume no numbers:
        np.random.randint(1000, 1001, size=50), np.random.randint(2000, 2001, size=50)
        expected = [0.0] + list(np.cumsum([np.random.exponential(1 / 10) for _ in range(49)]))
    finally:
        np.random.set_state(state)
    assert bench_serving_arrivals(50, 10.0) == pytest.approx(expected, rel=1e-15)
    assert 2.5 < bench_serving_arrivals(50, 10.0)[-1] < 8  # 4.67 s of arrivals at 10 req/s


def test_the_sglang_rows_are_flashinfer_only_and_simulated_with_the_sglang_profile():
    table = source_table("sglang_a100_issue5938")
    assert set(table.loc[table["split"] == "held_out", "attention_backend"]) == {"flashinfer"}
    assert set(table.loc[table["split"] == "excluded", "attention_backend"]) == {"fa3", "triton"}
    rows = sglang_issue5938_rows(load_profile("sglang"))
    assert len(rows) == 3 and {r["metric"] for r in rows} == {"throughput"}
    by = {(r["gpu"], r["measured"]): r["predicted"] for r in rows}
    assert by[("A100-SXM-40GB", 646.0)] == pytest.approx(670.2, abs=0.1)  # docs/fidelity.md: +3.7%
    # the 80 GB board holds more of the 5k-token requests at once: more output per second than the 40 GB one
    assert by[("A100-SXM-80GB", 981.31)] > by[("A100-SXM-40GB", 646.0)]


def test_the_mixtral_pr_rows_hold_out_the_fused_moe_columns_only():
    table = pd.read_csv(data_path("validation", "vllm_mixtral_prs", "measurements.csv"))
    assert set(table.loc[table["split"] == "held_out", "column"]) == {"this_pr"}
    assert set(table.loc[table["split"] == "excluded", "column"]) == {"master"}
    assert set(table["model"]) == {"Mixtral-8x7B"} and model("Mixtral-8x7B").num_experts == 8
    rows = mixtral_pr_rows(load_profile("vllm_v0_eager"))
    assert len(rows) == 14 and {(r["gpu"], r["tp"]) for r in rows} == {("H100-SXM-80GB", 8), ("A100-SXM-80GB", 2)}
    assert rows[0]["measured"] == 0.459  # the whole generate call, benchmark_latency's "Avg latency"
    for gpu_name in ("H100-SXM-80GB", "A100-SXM-80GB"):  # a bigger batch never finishes sooner
        times = [r["predicted"] for r in rows if r["gpu"] == gpu_name]
        assert times == sorted(times)
    assert rows[-1]["predicted"] == pytest.approx(7.245, abs=0.01)  # docs/fidelity.md: A100 TP 2, batch 64, -3.9%


def test_the_trtllm_perf_rows_are_fp16_in_flight_batching_with_the_pages_settings():
    table = source_table("trtllm_perf_overview_v011")
    held = table[table["split"] == "held_out"]
    assert len(held) == 52 and set(held["gpu"]) == {"H100-SXM-80GB", "A100-SXM-80GB"}
    assert all(model(name) for name in held["model"])  # every simulated row names a catalog model
    counts = {(r.input_len, r.output_len): r.num_requests for r in table.itertuples()}
    assert counts == {(128, 128): 30000, (128, 2048): 3000, (2048, 128): 3000, (2048, 2048): 1500}
    seventy_b = held[(held["model"] == "Llama-2-70B") & (held["tp"] == 8)]
    assert set(seventy_b.loc[seventy_b["output_len"] == 2048].query("input_len == 128")["max_batch_size"]) == {1024}
    row = next(table.query("model == 'Llama-2-7B' and gpu == 'A100-SXM-80GB' and input_len == 2048 "
                           "and output_len == 128").itertuples())
    result = trtllm_perf_row(load_profile("trtllm"), row)
    assert result["metric"] == "throughput" and result["measured"] == 558.56
    assert result["predicted"] == pytest.approx(535.26, abs=0.01)  # docs/fidelity.md: -4.2%


def test_the_trtllm_static_rows_are_per_gpu_batch_throughput_and_batch_one_first_tokens():
    rows = trtllm_static_rows(load_profile("trtllm"))
    assert [r["metric"] for r in rows].count("throughput") == 16 and [r["metric"] for r in rows].count("ttft") == 8
    by = {(r["model"], r["tp"], r["metric"], r["shape"]): r for r in rows}
    seventy = by[("Llama-2-70B", 4, "throughput", "1024 x 128/128")]
    assert seventy["measured"] == 686.0  # "out tok/s/GPU": the batch's tokens per second over 4 GPUs
    latency_s, _ = static_batch(model("Llama-2-70B"), gpu("A100-SXM-80GB"), 4, load_profile("trtllm"), 1024, 128, 128)
    assert seventy["predicted"] == pytest.approx(1024 * 128 / latency_s / 4)
    first = by[("Llama-2-7B", 1, "ttft", "1 x 2048/1")]  # a one-prompt batch generating its first token
    assert first["measured"] == 132.4 and first["predicted"] == pytest.approx(136.8, abs=0.1)


def test_a_batch_run_with_an_unfinished_request_is_refused_not_counted():
    frame = pd.DataFrame({"status": ["finished", "rejected: prompt exceeds the KV pool"], "finish_s": [1.0, float("nan")]})
    with pytest.raises(RuntimeError, match="1 of 2 requests did not finish"):
        last_finish_s(frame, "a batch")
    assert last_finish_s(frame.iloc[:1], "a batch") == 1.0
