"""`tessera experiment=mosaic` end to end on a small slice: the table, both figures and the saved results."""
import pandas as pd

from tests.experiments.conftest import run_cli


def test_mosaic_quick_run_prints_the_table_and_saves_figures(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["experiment=mosaic", "params.query_fraction=0.02", "params.datasets=[gpqa,aime]",
                    "params.aggregation_mode=pipelined", "output.progress=false", f"hydra.run.dir={run_dir}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "speedup_e2e" in proc.stdout and "unanimous" in proc.stdout
    table = pd.read_csv(run_dir / "mosaic_table.csv")
    assert set(table["scheduler"]) == {"sequential", "static", "least_loaded", "lpt", "mosaic"}
    assert (table[table["scheduler"] == "sequential"]["speedup_e2e"] == 1.0).all()
    for name in ("mosaic_speedups.png", "mosaic_gantt.png"):
        assert (run_dir / name).stat().st_size > 10_000
    requests = pd.read_parquet(run_dir / "requests.parquet")
    queries = pd.read_parquet(run_dir / "queries.parquet")
    # per run: every query's expert prompts, and one aggregator prompt per non-bypassed query
    for label, group in requests.groupby("run_label"):
        dataset, scheduler, aggregation = label.split("/")
        q = queries[(queries["dataset"] == dataset) & (queries["scheduler"] == scheduler)
                    & (queries["aggregation"] == aggregation)]
        assert (group["stage"] == "aggregator").sum() == (~q["bypass"]).sum()
        assert (group["stage"] == "expert").sum() == 3 * len(q)


def test_mosaic_bad_params_are_one_line_config_errors(tmp_path):
    proc = run_cli(["experiment=mosaic", "params.datasets=[mmlu]", "output.progress=false"], cwd=tmp_path)
    assert proc.returncode == 2 and "params.datasets" in proc.stderr
