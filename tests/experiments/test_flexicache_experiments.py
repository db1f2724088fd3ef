"""Each FlexiCache experiment runs through the CLI in quick mode and writes its table and figure;
serve_trace accepts a KV policy and reports its PCIe traffic."""
import json

import pandas as pd
import pytest

from tests.experiments.conftest import run_cli

EXPERIMENTS = {
    "flexicache_memory": "memory",
    "flexicache_throughput": "throughput",
    "flexicache_online": "online",
    "flexicache_rerank_cost": "rerank_cost",
    "flexicache_sensitivity": "sensitivity",
}


@pytest.mark.parametrize("experiment,name", list(EXPERIMENTS.items()))
def test_quick_mode_writes_table_and_figure(tmp_path, experiment, name):
    run_dir = tmp_path / "run"
    proc = run_cli([f"experiment={experiment}", "params.quick=true", "output.progress=false",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / f"{name}.png").stat().st_size > 10_000
    table = pd.read_csv(run_dir / f"{name}.csv")
    assert len(table) > 0
    assert json.loads((run_dir / "summary.json").read_text())["summary"]
    again = run_cli([f"experiment={experiment}", "params.quick=true", "output.progress=false",
                     f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert "skipping" in again.stdout


def test_serve_trace_runs_a_kv_policy(tmp_path):
    proc = run_cli(["kvpolicy=flexicache", "model=llama31_8b", "backend=sim_roofline", "workload.limit=60",
                    "output.progress=false", "output.figures=false", f"hydra.run.dir={tmp_path / 'run'}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "KV policy flexicache: PCIe H2D" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]
    assert summary["kv"]["pcie_d2h_bytes"] > 0
    frame = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    assert frame["bytes_moved"].sum() == pytest.approx(summary["kv"]["pcie_h2d_bytes"] + summary["kv"]["pcie_d2h_bytes"])


def test_a_bad_kvpolicy_parameter_is_a_config_error(tmp_path):
    proc = run_cli(["kvpolicy=flexicache", "kvpolicy.rerank_interval=0", "workload.limit=10",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "kvpolicy.flexicache.rerank_interval=0 is invalid" in proc.stderr
