"""Run one experiment as a subprocess of the `tessera` CLI into <out>/<name>, timed, its output captured.

stdout/stderr go to <out>/.logs while it runs (a failed run's folder is deleted by `tessera`), then into its folder.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tessera.experiments.reproduce.catalog import PaperExperiment

TAIL_LINES = 15
INTERRUPTED = -2  # returncode recorded when Ctrl-C stopped the run


@dataclass
class RunResult:
    experiment: PaperExperiment
    command: list[str]  # as a user would type it (program `tessera`)
    run_dir: Path
    seconds: float
    returncode: int
    stderr_tail: str

    @property
    def ok(self) -> bool:
        # summary.json is written last: its presence marks a complete run (docs/outputs.md)
        return self.returncode == 0 and (self.run_dir / "summary.json").exists()

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        if self.returncode == INTERRUPTED:
            return "interrupted"
        return f"failed (exit {self.returncode})" if self.returncode else "failed (no summary.json)"


def tessera_args(name: str, run_dir: Path, quick: bool, extra: list[str]) -> list[str]:
    return [f"experiment={name}", *(["params.quick=true"] if quick else []), f"hydra.run.dir={run_dir}",
            "output.progress=false", *extra]


def tessera_program() -> list[str]:
    """The venv's `tessera` script beside this interpreter, else the module's entry point."""
    script = Path(sys.executable).parent / "tessera"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tessera.experiments.run import main; main()"]


def run_experiment(experiment: PaperExperiment, out: Path, quick: bool, extra: list[str] = (),
                   on_tick: Callable[[float], None] = lambda elapsed: None, tick_s: float = 60) -> RunResult:
    """Run it to the end (on_tick(elapsed) every tick_s while it runs); a failure is returned, never raised."""
    run_dir = out / experiment.name
    args = tessera_args(experiment.name, run_dir, quick, list(extra))
    shown = ["tessera", *args]
    problem = clear_previous(run_dir)
    if problem:
        return RunResult(experiment, shown, run_dir, 0.0, 1, problem)
    logs = out / ".logs"
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / f"{experiment.name}.stdout.txt", logs / f"{experiment.name}.stderr.txt"
    start = time.monotonic()
    with stdout.open("w") as out_file, stderr.open("w") as err_file:
        proc = subprocess.Popen([*tessera_program(), *args], stdout=out_file, stderr=err_file)
        returncode = wait(proc, start, on_tick, tick_s)
    seconds = time.monotonic() - start
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(stdout, run_dir / "stdout.txt")
    shutil.move(stderr, run_dir / "stderr.txt")
    tail = "\n".join((run_dir / "stderr.txt").read_text(errors="replace").splitlines()[-TAIL_LINES:])
    return RunResult(experiment, shown, run_dir, seconds, returncode, tail)


def wait(proc: subprocess.Popen, start: float, on_tick: Callable[[float], None], tick_s: float) -> int:
    try:
        while True:
            try:
                return proc.wait(timeout=tick_s)
            except subprocess.TimeoutExpired:
                on_tick(time.monotonic() - start)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return INTERRUPTED


def clear_previous(run_dir: Path) -> str:
    """Remove an earlier run of this experiment in the folder; refuse (return why) to remove anything else."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return ""
    if (run_dir / ".hydra").exists() or (run_dir / "stdout.txt").exists():
        shutil.rmtree(run_dir)
        return ""
    return f"{run_dir} exists and is not an earlier run of this command: choose another --out"
