"""notebooks/sweep_analysis.ipynb on a small real sweep, and with no sweep at its path."""
import pytest

from tessera.paths import REPO_ROOT
from tests.experiments.conftest import run_cli
from tests.notebooks.execute import execute


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("multirun")
    proc = run_cli(["-m", f"hydra.sweep.dir={root / 'rates'}", "workload=sharegpt_poisson", "workload.num_requests=40",
                    "workload.arrival.rate=2,4", "output.progress=false", "output.figures=false",
                    "output.print_table=false"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "rates"


def test_it_labels_each_run_by_the_value_that_varied(sweep):
    run = execute("sweep_analysis.ipynb", SWEEP_DIR=str(sweep))
    assert f"2 runs, 80 requests from {sweep}" in run.text
    assert "varied: workload.arrival.rate" in run.text
    assert "rate 2 req/s" in run.text and "rate 4 req/s" in run.text
    assert run.figures == 2


def test_without_a_sweep_it_says_which_command_makes_one():
    run = execute("sweep_analysis.ipynb", SWEEP_DIR="multirun/no-such-sweep")
    assert f"No finished runs under {REPO_ROOT / 'multirun' / 'no-such-sweep'}" in run.text  # from the repo root
    assert "tessera -m hydra/launcher=joblib sweep_name=rates" in run.text
    assert run.figures == 0
