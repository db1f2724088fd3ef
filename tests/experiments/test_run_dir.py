"""A run folder's ownership (experiments/run_dir.py): a failed run removes only what it wrote, a finished run of
another config is refused rather than skipped, and a run dir that cannot be one is refused up front."""
import json

from omegaconf import OmegaConf

import os
from pathlib import Path

import pytest

from tessera.experiments.config import ConfigError
from tessera.experiments.run_dir import (config_differences, finished_run, named_run_dir, prepare, remove_failed_run,
                                        snapshot, snapshot_after_hydra)
from tests.experiments.conftest import SMALL, run_cli

BAD = "engine.scheduler=foo"  # valid to compose, refused by the experiment's checks (after Hydra made the folder)


def test_a_config_error_keeps_the_files_a_folder_had(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "important.txt").write_text("precious")
    (folder / "run.log").write_text("an earlier log\n")
    proc = run_cli([*SMALL, BAD, f"hydra.run.dir={folder}"], cwd=tmp_path)
    assert proc.returncode == 2 and "engine.scheduler" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["important.txt", "run.log"]  # .hydra/ (the run's) went
    assert (folder / "important.txt").read_text() == "precious"
    assert (folder / "run.log").read_text() == "an earlier log\n"  # the run's lines cut off again


def test_a_config_error_removes_the_folder_it_made_and_its_new_parents(tmp_path):
    proc = run_cli([*SMALL, BAD, f"hydra.run.dir={tmp_path / 'new' / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert not (tmp_path / "new").exists()


def test_a_named_folder_is_looked_at_before_hydra_writes_to_it(tmp_path):
    """A .hydra/ the folder had (with a file of the user's) stays: the snapshot is taken before Hydra runs. The
    guess made after Hydra (snapshot_after_hydra) would take a .hydra/ as the run's own; here it holds more."""
    folder = tmp_path / "mine"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "notes.txt").write_text("mine")
    proc = run_cli([*SMALL, BAD, f"++hydra.run.dir={tmp_path / 'x' / '..' / 'mine'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert (folder / ".hydra" / "notes.txt").read_text() == "mine"  # (Hydra itself makes x/ on its way to ../)


def test_a_finished_run_of_another_config_is_refused_and_left_as_it_was(tmp_path):
    run = tmp_path / "run"
    first = run_cli([*SMALL, "workload.limit=40", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = (run / "summary.json").read_text()
    same = run_cli([*SMALL, "workload.limit=40", "output.print_table=false", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert same.returncode == 0 and "skipping" in same.stdout  # a presentation key does not make another run
    other = run_cli([*SMALL, "workload.limit=40", "engine_profile=trtllm", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert other.returncode == 2, other.stdout
    line = other.stderr.strip().splitlines()[-1]
    assert "finished run of another config" in line and "engine_profile.name" in line and "force=true" in line
    assert (run / "summary.json").read_text() == summary
    hydra_config = OmegaConf.load(run / ".hydra" / "config.yaml")  # Hydra rewrote it; put back to the run's own
    assert hydra_config.engine_profile.name == "tessera_default"
    assert json.loads(summary)["metadata"]["overrides"] == list(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
    forced = run_cli([*SMALL, "workload.limit=40", "engine_profile=trtllm", "force=true", f"hydra.run.dir={run}"],
                     cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert json.loads((run / "summary.json").read_text())["metadata"]["ran"]["engine_profile"]["name"] == "trtllm"


def test_a_run_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    proc = run_cli([*SMALL, f"hydra.run.dir={path}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is a file, not a folder" in proc.stderr and path.read_text() == "x"


def test_config_differences_ignore_presentation_keys():
    stored = {"seed": 0, "force": False, "output": {"figures": True, "batch_log": "auto"}, "notes": None}
    cfg = OmegaConf.create({"seed": 0, "force": True, "output": {"figures": False, "batch_log": "auto"},
                            "notes": "again"})
    assert config_differences(stored, cfg) == []
    cfg.output.batch_log = True
    cfg.seed = 1
    assert config_differences(stored, cfg) == ["output.batch_log", "seed"]
    assert config_differences({"a": {"b": 1}}, OmegaConf.create({"a": {}})) == ["a", "a.b"]


def test_remove_failed_run_takes_only_what_the_run_added(tmp_path):
    (tmp_path / "data.csv").write_text("1")
    (tmp_path / "run.log").write_text("old\n")
    before = snapshot(tmp_path)
    with (tmp_path / "run.log").open("a") as log:
        log.write("the failed run's lines\n")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "requests.parquet.tmp").write_text("partial")
    remove_failed_run(tmp_path, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "run.log"]
    assert (tmp_path / "run.log").read_text() == "old\n"
    fresh = tmp_path / "fresh"
    made = snapshot(fresh)
    fresh.mkdir()
    (fresh / "run.log").write_text("x")
    remove_failed_run(fresh, made)
    assert not fresh.exists()
    crashed = tmp_path / "crashed"
    made = snapshot(crashed)
    crashed.mkdir()
    (crashed / "run.log").write_text("traceback")
    remove_failed_run(crashed, made, keep_log=True)  # a crash keeps its log for the post-mortem
    assert (crashed / "run.log").exists()


def test_the_guess_after_hydra_keeps_a_log_with_lines_and_foreign_files(tmp_path):
    (tmp_path / "run.log").write_text("an earlier crash\n")
    before = snapshot_after_hydra(tmp_path)
    assert before.existed and before.log_bytes == len("an earlier crash\n")
    remove_failed_run(tmp_path, before)
    assert (tmp_path / "run.log").read_text() == "an earlier crash\n"
    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (fresh / ".hydra" / name).write_text("x")
    (fresh / "run.log").write_text("")
    assert not snapshot_after_hydra(fresh).existed  # Hydra's files and an empty log only: the run's own folder
    (fresh / "data.csv").write_text("1")
    assert snapshot_after_hydra(fresh).entries == {"data.csv"}


@pytest.mark.parametrize("args, expected", [
    (["hydra.run.dir=/a/b"], "/a/b"),
    (["++hydra.run.dir=/a/x/../b"], "/a/b"),
    (["+hydra.run.dir='/a/my dir'"], "/a/my dir"),
    (["hydra.run.dir=/a/my\\ dir"], "/a/my dir"),
    (["hydra.run.dir=/a/1", "hydra.run.dir=/a/2"], "/a/2"),
    (["hydra.run.dir=outputs/${experiment}"], None),
    (["seed=1"], None),
])
def test_named_run_dir_reads_the_value_as_hydra_does(args, expected):
    got = named_run_dir(args)
    assert got == (None if expected is None else Path(expected))
    assert named_run_dir(["hydra.run.dir='~/r'"]) == Path(os.path.abspath("~/r"))  # Hydra does not expand ~


def test_prepare_refuses_a_folder_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert "cannot be made" in prepare(tmp_path / "afile" / "run")
    assert "is a file, not a folder" in prepare(tmp_path / "afile")
    assert prepare(tmp_path / "ok") is None and (tmp_path / "ok").is_dir()


def test_a_finished_run_without_a_recorded_config_is_refused(tmp_path):
    for name in ("requests.parquet", "kv_usage.parquet"):
        (tmp_path / name).write_text("")
    (tmp_path / "summary.json").write_text(json.dumps({"summary": {}, "metadata": {}}))
    cfg = OmegaConf.create({"seed": 0})
    with pytest.raises(ConfigError, match="records no tessera config"):
        finished_run(tmp_path, cfg)
    assert finished_run(tmp_path, OmegaConf.create({"seed": 0, "force": True})) is None


def test_a_sweep_over_another_configs_finished_runs_launches_nothing(tmp_path):
    args = ["-m", *SMALL, "workload.limit=20", "seed=0,1", "sweep_name=s"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    summary = tmp_path / "multirun" / "s" / "seed=0,workload.limit=20" / "summary.json"
    payload = json.loads(summary.read_text())
    payload["metadata"]["config"]["engine"]["max_num_seqs"] = 7  # as if conf/ had changed since
    summary.write_text(json.dumps(payload))
    again = run_cli([*args[:-2], "seed=0,1,2", "sweep_name=s"], cwd=tmp_path)
    assert again.returncode == 2 and "nothing was launched" in again.stderr
    assert "differs in engine.max_num_seqs" in again.stderr and "sweep_name" in again.stderr
    assert not (tmp_path / "multirun" / "s" / "seed=2,workload.limit=20").exists()

