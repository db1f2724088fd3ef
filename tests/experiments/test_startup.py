"""A simulator run imports only what it uses: not torch, Triton, transformers, Ray, the ILP stack, the runtime or the
kernels, and not matplotlib when output.figures=false (checked with `python -X importtime` on the real command)."""
import subprocess
import sys

FORBIDDEN = ("torch", "triton", "transformers", "ray", "pyomo", "highspy", "tessera.runtime", "tessera.kernels",
             "matplotlib")


def imported_modules(args, cwd) -> set[str]:
    code = "import sys; from tessera.experiments.run import main; sys.argv = ['tessera', *sys.argv[1:]]; main()"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 100  # the report is there (the run imported numpy, pandas, hydra, simpy ...)
    return set(lines)


def test_a_simulator_run_imports_neither_torch_nor_triton(tmp_path):
    modules = imported_modules(["workload.limit=50", "output.progress=false", "output.figures=false",
                                f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert {"simpy", "pandas", "hydra", "tessera.sim.worker"} <= modules
    leaked = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not leaked, f"a simulator run imported {leaked[:10]}"
    assert (tmp_path / "run" / "summary.json").exists()
