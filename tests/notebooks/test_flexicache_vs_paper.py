"""notebooks/flexicache_vs_paper.ipynb on quick runs of both experiments laid out as `tessera` lays them out
(outputs/<experiment>/<date>_<time>/), and with no runs at its paths."""
import pandas as pd
import pytest

from tessera.paths import REPO_ROOT
from tests.experiments.conftest import run_cli
from tests.notebooks.execute import execute

EXPERIMENTS = {"flexicache_throughput": "throughput.csv", "flexicache_online": "online.csv"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    for experiment in EXPERIMENTS:
        proc = run_cli([f"experiment={experiment}", "params.quick=true", "output.progress=false",
                        "output.figures=false", "output.print_table=false",
                        f"hydra.run.dir={root / experiment / '2026-01-01_00-00-00'}"], cwd=root)
        assert proc.returncode == 0, proc.stderr
    return root


def test_it_reads_the_newest_run_of_each_experiment(outputs):
    run = execute("flexicache_vs_paper.ipynb", THROUGHPUT_DIR=str(outputs / "flexicache_throughput"),
                  ONLINE_DIR=str(outputs / "flexicache_online"))
    for experiment, table in EXPERIMENTS.items():
        run_dir = outputs / experiment / "2026-01-01_00-00-00"
        rows = len(pd.read_csv(run_dir / table))
        assert f"{experiment}: {rows} simulations from {run_dir} (a quick run" in run.text
    assert "paper (Llama)" in run.text
    assert run.figures == 2


def test_without_runs_it_says_which_commands_make_them():
    run = execute("flexicache_vs_paper.ipynb", THROUGHPUT_DIR="outputs/no-such-throughput",
                  ONLINE_DIR="outputs/no-such-online")
    assert f"No flexicache_throughput results (throughput.csv) under {REPO_ROOT / 'outputs' / 'no-such-throughput'}" \
        in run.text
    assert ".venv/bin/tessera experiment=flexicache_throughput" in run.text
    assert ".venv/bin/tessera experiment=flexicache_online" in run.text
    assert run.figures == 0
