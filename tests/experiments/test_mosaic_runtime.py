"""`tessera experiment=mosaic backend=runtime` end to end on Ray workers (params.quick), and its failure paths:
Ray missing or unreachable is a one-line config error; a worker lost mid-run stops the run with nothing written."""
import json
import sys

import numpy as np
import pandas as pd
import pytest

from tessera import results
from tessera.experiments.config import ConfigError
from tests.experiments.conftest import run_cli

needs_model = pytest.mark.usefixtures("smollm2")  # tests/conftest.py: built on first use
QUICK = ["experiment=mosaic", "backend=runtime", "params.quick=true"]


@needs_model
def test_quick_run_compares_every_scheduler_with_the_simulator(tmp_path):
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    proc = run_cli([*QUICK, "output.progress=false", f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Kendall tau" in proc.stdout
    table = pd.read_csv(run_dir / "mosaic_table.csv")
    assert set(table["scheduler"]) == {"sequential", "static", "least_loaded", "lpt", "mosaic"}
    assert set(table["aggregation"]) == {"always", "unanimous"}
    base = table[(table["scheduler"] == "sequential") & (table["aggregation"] == "always")].iloc[0]
    assert base["speedup_e2e"] == 1.0 and base["sim_speedup_e2e"] == 1.0
    assert (table["e2e_s"] > 0).all() and (table["sim_e2e_s"] > 0).all()
    assert np.allclose(table["err_e2e"], table["sim_e2e_s"] / table["e2e_s"] - 1)
    assert table["bypass_rate"].between(0, 1).all() and table["accuracy"].between(0, 1).all()
    assert (table.loc[table["aggregation"] == "always", "bypass_rate"] == 0).all()
    summary = json.loads((run_dir / "summary.json").read_text())["summary"]
    assert -1 <= summary["kendall_tau_e2e"] <= 1 and summary["workers"][0]["device"] == "cpu"
    assert summary["repeats"] == 1 and (table["repeats"] == 1).all() and (table["spread_e2e"] == 0).all()
    assert len(pd.read_csv(run_dir / "mosaic_rounds.csv")) == len(table)
    assert table["driver_load_avg"].notna().all() and summary["profiling"]["calibration_ops_scale"]
    requests = pd.read_parquet(run_dir / "requests.parquet")
    queries = pd.read_parquet(run_dir / "queries.parquet")
    assert set(requests["worker"]) <= {0, 1} and requests["model"].notna().all()
    assert len(results.load(run_dir)) == len(requests)  # the shared schema: notebooks read it unchanged
    for label, group in requests.groupby("run_label"):  # every query's k expert prompts, aggregator unless bypassed
        _, scheduler, aggregation, rnd = label.split("/")
        q = queries[(queries["scheduler"] == scheduler) & (queries["aggregation"] == aggregation)
                    & (queries["repeat"] == int(rnd[1:]))]
        assert (group["stage"] == "expert").sum() == 2 * len(q) == 8
        assert (group["stage"] == "aggregator").sum() == (~q["bypass"]).sum()
        final = group[group["stage"] == "aggregator"]
        assert final["correct"].tolist() == q.set_index("query_id").loc[final["query_id"], "correct"].tolist()
    steps = pd.read_csv(run_dir / "calibration_steps.csv")  # what the placer's and the simulator's costs came from
    assert set(steps["worker"]) == {0, 1} and (steps["time_s"] > 0).all()
    assert set(steps["source"]) == {"step sweep", "validation draw"}  # the fit is anchored at served shapes
    staged = pd.read_csv(run_dir / "stage_steps.csv")  # every stage's steps, checked against the fit, not fitted
    assert set(staged["stage"]) == {"expert", "aggregator"} and (staged["fit_s"] > 0).all()
    assert set(staged["scheduler"]) == set(table["scheduler"]) and summary["stage_step_fit"]["expert"]["steps"] > 0
    assert table["step_fit_err_expert"].notna().all() and table["busy_expert"].between(0, 1).all()
    for name in ("mosaic_runtime_gantt.png", "mosaic_runtime_makespan.png"):
        assert (run_dir / name).stat().st_size > 10_000


@needs_model
def test_ray_not_installed_is_a_config_error_naming_the_fix(composed, tmp_path, monkeypatch):
    from tessera.experiments.mosaic_runtime.run import run

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install ray==2\.60\.0"):
        run(composed(QUICK), tmp_path, {})
    assert not any(tmp_path.iterdir())


@needs_model
def test_an_unreachable_ray_address_is_a_config_error(composed, tmp_path):
    pytest.importorskip("ray")
    from tessera.experiments.mosaic_runtime.run import run

    with pytest.raises(ConfigError, match=r"ray_address='127\.0\.0\.1:9'.*leave ray_address null"):
        run(composed([*QUICK, "backend.runtime.ray_address=127.0.0.1:9"]), tmp_path, {})
    assert not any(tmp_path.iterdir())


@needs_model
@pytest.mark.slow
def test_a_worker_lost_mid_run_stops_it_naming_the_worker_and_writes_nothing(composed, tmp_path):
    """`static` pins each expert to one worker, so worker 1's prompts have no survivor holding their expert."""
    ray = pytest.importorskip("ray")
    from tessera.experiments.mosaic_runtime.run import run

    killed = []

    def kill_worker_1(pool):  # called once each stage's first phases are dispatched
        if not killed:
            killed.append(pool.infos[1]["pid"])
            ray.kill(pool.actors[1])

    cfg = composed([*QUICK, "params.schedulers=[static,mosaic]", "params.baseline=static"])
    with pytest.raises(SystemExit, match=r"nothing written as complete.*worker 1 .*no surviving worker holds"):
        run(cfg, tmp_path, {}, on_dispatched=kill_worker_1)
    assert killed and not any(tmp_path.iterdir())
