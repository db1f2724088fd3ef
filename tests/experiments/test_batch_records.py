"""serve_trace on the simulator writes per-iteration records and the Perfetto trace for small runs (output.batch_log,
output.chrome_trace: auto | true | false), MFU/MBU per worker in summary.json and the per-request breakdown."""
import json

import pandas as pd
import pytest

from tessera.experiments.config import ConfigError
from tessera.experiments.overrides import check_run
from tests.experiments.conftest import run_cli

SMALL = ["workload.limit=200", "output.progress=false", "output.figures=false", "output.print_table=false"]


def test_a_small_run_writes_batches_trace_utilisation_and_breakdown(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*SMALL, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    batches = pd.read_parquet(run_dir / "batches.parquet")
    assert list(batches.columns) == ["worker", "t_s", "duration_s", "prefill_tokens", "decode_seqs",
                                     "kv_tokens_read", "preemptions"]
    assert len(batches) == sum(w["iterations"] for w in summary["workers"])
    trace = json.loads((run_dir / "trace.json").read_text())["traceEvents"]
    assert sum(e["ph"] == "X" for e in trace) == len(batches)
    for w in summary["workers"]:
        assert 0 < w["mfu"] <= w["mfu_busy"] < 1 and 0 < w["mbu"] <= w["mbu_busy"] < 1
    requests = pd.read_parquet(run_dir / "requests.parquet")
    assert {"execution_s", "preemption_s", "scheduling_delay_s"} <= set(requests.columns)
    assert summary["breakdown_s"]["execution"]["mean"] > 0


def test_records_can_be_turned_off_and_a_bad_value_names_the_key(tmp_path):
    run_dir = tmp_path / "off"
    proc = run_cli([*SMALL, "output.batch_log=false", "output.chrome_trace=false", f"hydra.run.dir={run_dir}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "summary.json").exists()
    assert not (run_dir / "batches.parquet").exists() and not (run_dir / "trace.json").exists()
    bad = run_cli([*SMALL, "output.batch_log=sometimes", f"hydra.run.dir={tmp_path / 'bad'}"], cwd=tmp_path)
    assert bad.returncode == 2
    assert "output.batch_log='sometimes' is invalid" in bad.stderr


def test_experiments_that_write_no_records_refuse_the_keys(composed):
    for base in (["experiment=flexicache_memory"], ["backend=runtime", "model=tessera_tiny_byte"]):
        for change in ("output.batch_log=true", "output.chrome_trace=false"):
            with pytest.raises(ConfigError, match="only experiment=serve_trace on the simulator writes"):
                check_run(composed([*base, change]), [change])
    check_run(composed(["output.batch_log=true"]), ["output.batch_log=true"])  # serve_trace on the simulator


def test_a_trace_names_every_gpu_of_a_pipelined_worker():
    from tessera.experiments.serve_trace import gpu_count

    from tessera.experiments.serve_trace import worker_names

    assert gpu_count({"tp": 2, "pp": 2}) == "4 (TP 2 x PP 2)"  # was "2": the stages' GPUs were left out
    assert gpu_count({"tp": 8, "pp": 1}) == "8" and gpu_count({"tp": 1}) == "1"
    workers = pd.DataFrame({"worker": [0, 1], "model": ["Llama-2-70B"] * 2, "gpu": ["H100"] * 2, "tp": [2, 2],
                            "pp": [2, 2]})
    assert worker_names(workers) == {0: "worker 0: Llama-2-70B on 4 (TP 2 x PP 2) x H100",
                                     1: "worker 1: Llama-2-70B on 4 (TP 2 x PP 2) x H100"}


def test_summary_says_what_an_hbm_share_reaches_on_each_cost_model(composed):
    from tessera.experiments.resolve import resolve
    from tessera.experiments.run_record import simulated_cluster_record

    for backend, reaches in (("sim", "the linear layers take the profiled tables' measured times"),
                             ("sim_roofline", "every HBM read")):
        cfg = composed([f"backend={backend}", "engine_profile=trtllm"])
        assert reaches in simulated_cluster_record(cfg, resolve(cfg))["hbm_fraction_applies_to"]


def test_every_preemption_of_a_kv_policy_run_is_in_a_batch_row(tmp_path):
    """Scheduler calls that preempt and run nothing (a KV policy waiting for copies) hand their preemptions to the
    next iteration's row (they were lost: 3,062 rows' worth of 3,071 on this run)."""
    run_dir = tmp_path / "run"
    proc = run_cli(["model=llama31_8b", "backend=sim_roofline", "kvpolicy=flexicache",
                    "engine.gpu_memory_utilization=0.25", "workload=long_context", "workload.num_requests=60",
                    "workload.lengths.prompt_tokens=[8000,16000]", "workload.lengths.output_tokens=[300,300]",
                    "output.progress=false", "output.figures=false", "output.print_table=false",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    assert summary["preemptions"] > 1000
    assert pd.read_parquet(run_dir / "batches.parquet")["preemptions"].sum() == summary["preemptions"]
    quest = tmp_path / "quest"
    proc = run_cli(["model=llama31_8b", "backend=sim_roofline", "kvpolicy=quest", "workload=long_context",
                    "workload.num_requests=4", "output.progress=false", "output.figures=false",
                    "output.print_table=false", f"hydra.run.dir={quest}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    kv = json.loads((quest / "summary.json").read_text())["summary"]["kv"]
    assert kv["host_capacity_bytes"] == 0 and kv["pcie_h2d_bytes"] == 0  # quest keeps nothing on host
