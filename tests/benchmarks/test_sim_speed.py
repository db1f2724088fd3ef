"""sim_speed.py's run of an older tree: the tree is installed apart and runs the benchmark's workload, or is refused."""
import argparse
import importlib.util
import shutil
import subprocess
import sys

import pytest

from benchmarks.sim_speed import commit_run, main, print_flexicache_table
from tessera.paths import REPO_ROOT


def _has_git_history() -> bool:
    """git and this checkout's history, and setuptools to install a tree without build isolation."""
    if shutil.which("git") is None or importlib.util.find_spec("setuptools") is None:
        return False
    return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0


needs_git = pytest.mark.skipif(not _has_git_history(), reason="needs git, the repository's history and setuptools")
ARGS = argparse.Namespace(num_requests=3, output_len=20, seed=0)


@needs_git
def test_a_commits_tree_runs_the_workload_from_its_own_install(tmp_path):
    row = commit_run("HEAD", ARGS, tmp_path)
    assert row["tessera"].startswith(str(tmp_path / "baseline_site"))  # not this checkout's package
    assert row["requests"] == row["finished"] == 3
    assert row["out_tok_per_s"] > 0 and row["cpu_s"] > 0 and row["process_cpu_s"] >= row["cpu_s"]
    assert (tmp_path / "baseline_run" / "requests.parquet").exists()


@needs_git
def test_an_unknown_commit_is_refused_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        commit_run("0" * 40, ARGS, tmp_path)
    assert exit_info.value.code == 2
    assert "--baseline-commit 0000000" in capsys.readouterr().err


def _row(cpu_s: float, **extra) -> dict:
    return {"cpu_s": cpu_s, "requests": 500, "out_tok_per_s": 595.0, "pcie_h2d_gb": 405.3, "pcie_d2h_gb": 1029.9,
            "reloads": 15500, "stall_s": 16.06, "mean_batch": 58.3, **extra}


def test_the_table_puts_the_older_tree_beside_every_mode(capsys):
    rows = {"pages": _row(14.0), "sampled": _row(2.0), "moments": _row(0.56), "moments, cached": _row(0.5)}
    older = _row(15.0, rerank_mode="pages", process_cpu_s=16.0)
    args = argparse.Namespace(num_requests=500, output_len=500, repeat=3, baseline_commit="e004a5697c56" + "0" * 28)
    print_flexicache_table(rows, args, older)
    out = capsys.readouterr().out
    assert "pages @e004a56" in out
    assert "moments, cached vs pages @e004a56: 30.0x faster" in out and "moments vs pages: 25.0x faster" in out
    print_flexicache_table(rows, argparse.Namespace(**{**vars(args), "baseline_commit": None}), None)
    assert "@" not in capsys.readouterr().out


def test_a_baseline_commit_without_the_flexicache_workload_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sim_speed.py", "--baseline-commit"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "--kvpolicy flexicache" in capsys.readouterr().err
