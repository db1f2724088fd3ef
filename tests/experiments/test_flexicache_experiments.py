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


def test_the_paper_comparison_notebook_reads_both_experiments(tmp_path):
    import os

    import nbformat
    from nbclient import NotebookClient

    from tessera.paths import REPO_ROOT

    dirs = {}
    for experiment in ("flexicache_throughput", "flexicache_online"):
        dirs[experiment] = tmp_path / experiment
        proc = run_cli([f"experiment={experiment}", "params.quick=true", "output.progress=false",
                        "output.figures=false", f"hydra.run.dir={dirs[experiment]}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    nb = nbformat.read(REPO_ROOT / "notebooks" / "flexicache_vs_paper.ipynb", as_version=4)
    env = {"TESSERA_FC_THROUGHPUT_DIR": str(dirs["flexicache_throughput"]),
           "TESSERA_FC_ONLINE_DIR": str(dirs["flexicache_online"])}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for key in env:
            del os.environ[key]
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "throughput: 4 runs, online: 3 runs" in outputs  # quick: 2 outputs x 2 policies; 1 rate x 3 policies
    assert "paper (Llama)" in outputs
