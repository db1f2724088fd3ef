"""sim_speed.py's run of an older tree: the tree is installed apart and runs the benchmark's workload, or is refused."""
import argparse
import importlib.util
import shutil
import subprocess

import pytest

from benchmarks.sim_speed import commit_run
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
