"""End-to-end runs of the app: determinism and sweeps that skip finished runs (the analysis notebook reads a
sweep in tests/notebooks/)."""
import json

import pandas as pd

from tests.experiments.conftest import SMALL, run_cli


def test_same_seed_gives_identical_parquet(tmp_path):
    for name in ("a", "b"):
        proc = run_cli(["output.progress=false", f"hydra.run.dir={tmp_path / name}", "workload=sharegpt_poisson",
                        "workload.num_requests=200", "seed=3"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    a, b = (tmp_path / n / "requests.parquet" for n in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    frame = pd.read_parquet(a)
    assert len(frame) == 200 and (frame["status"] == "finished").all()


def test_default_experiment_prints_the_summary_table_and_saves_a_cdf(tmp_path):
    proc = run_cli(["workload.limit=300", "output.progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "TTFT" in proc.stdout and "TPOT" in proc.stdout and "p99 (ms)" in proc.stdout
    assert (tmp_path / "run" / "latency_cdf.png").stat().st_size > 10_000


def test_sweep_with_joblib_skips_finished_runs(tmp_path):
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *SMALL, "workload.limit=200", "cluster.num_workers=1,2"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name != ".submitit")
    assert runs == ["cluster.num_workers=1,workload.limit=200", "cluster.num_workers=2,workload.limit=200"]
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipping") == 2


def test_a_run_whose_every_request_is_refused_says_so_and_writes_strict_json(tmp_path):
    proc = run_cli(["output.progress=false", "output.figures=false", "workload=sharegpt_poisson",
                    "workload.num_requests=4", "workload.lengths.kind=fixed", "+workload.lengths.prompt_tokens=8000",
                    "+workload.lengths.output_tokens=20", "workload.context_limit=refuse",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "every request was refused (workload.context_limit=refuse): nothing was served" in proc.stderr

    def refuse(constant):
        raise ValueError(constant)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=refuse)["summary"]
    assert summary["context_limit"]["num_refused"] == 4 and summary["request_throughput_per_s"] is None
