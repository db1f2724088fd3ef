"""`experiment=long_context` runs on both backends with the same config: the simulator and the real engine
on the shipped model (the issue's 'same Hydra experiment on backend=sim and backend=runtime')."""
import pandas as pd
import pytest

from tessera.results.schema import REQUEST_COLUMNS
from tests.experiments.conftest import run_cli


@pytest.mark.parametrize("backend", [[], ["backend=runtime", "model=tessera_tiny_byte", "backend.runtime.num_threads=1"],
                                     ["cluster=cpu_calibrated", "model=tessera_tiny_byte"]])
def test_long_context_runs_on_both_backends(tmp_path, backend):
    proc = run_cli(["experiment=long_context", *backend, "workload.num_requests=2", "output.progress=false",
                    "output.figures=false", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    assert set(REQUEST_COLUMNS) <= set(frame.columns)
    assert len(frame) == 2 and (frame["status"] == "finished").all()
    assert (frame["prompt_tokens"] >= 2048).all() and (frame["output_tokens"] == 64).all()
    assert "flexicache" in proc.stdout
