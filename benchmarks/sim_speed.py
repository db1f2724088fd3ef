"""Simulator speed, every figure measured side by side in one run, in CPU seconds (time.process_time).

Default: the Azure code trace (8,819 requests) on Llama-2-7B / 1 x H100 with full KV: the library run (load trace,
simulate, write results) with decode spans vs one event per iteration, then the `tessera` command's whole process
(start-up, Hydra, simulation, results, figure) vs the library run, and the command that reproduces Vidur's run.
--kvpolicy flexicache: the offline-throughput workload (experiment=flexicache_throughput: 500 requests, prompts
10k-30k tokens, --output-len tokens each, Llama-3.1-8B on 1 x H100-NVL) with page-id reranks (today's mode) vs
sampled reranks (counts only, exact in distribution) vs moments (request totals from tabulated per-head moments,
approximate), whole run (workload, simulation, results, the moments' tables) each, pages once and the others the best
of --repeat; moments twice: drawing its tables (an empty on-disk table cache), then as a later process would, reading
them back (tessera/kvcache/table_cache.py). --baseline-commit [COMMIT] also runs the same workload on an older tree
(by default the one issue 15 was filed against, whose page-id mode is the issue's "today"), installed apart from
this one in a temporary folder, once, with that tree's defaults.
Targets (issue 15): FlexiCache >= 1,000 requests per CPU-second and >= 100x the page-id mode; the command's whole run
within 2x of the library run; the command >= 20x Vidur's whole run.
Run: .venv/bin/python benchmarks/sim_speed.py [--kvpolicy flexicache [--baseline-commit [COMMIT]]] [--repeat 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from tessera.cost import make_cost_model
from tessera.hardware import gpu, host_link
from tessera.memory import MemoryConfig
from tessera.models import model
from tessera.paths import REPO_ROOT
from tessera.results import save_run, summarize
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, kv_usage_frame, make_router, request_frame
from tessera.types import WorkerSpec
from tessera.workload import load_trace

VIDUR_CMD = ("python -m vidur.main --replica_config_device h100 --replica_config_model_name meta-llama/Llama-2-7b-hf "
             "--cluster_config_num_replicas 1 --replica_config_tensor_parallel_size 1 "
             "--replica_config_num_pipeline_stages 1 --request_generator_config_type trace_replay "
             "--trace_request_generator_config_trace_file ./data/processed_traces/AzureLLMInferenceTrace_code.csv "
             "--replica_scheduler_config_type vllm --vllm_scheduler_config_batch_size_cap 256 "
             "--vllm_scheduler_config_max_tokens_in_batch 8192 --vllm_scheduler_config_block_size 16  "
             "# then: /usr/bin/time -f '%U user %S sys' on it")

# The last commit before issue 15's work, the issue's "today": its FlexiCache runs materialise page ids. On this
# benchmark's workload (500 output tokens a request) it takes ~15-16 CPU s; the issue's "about a minute" was its own run.
ISSUE_15_FILED_COMMIT = "e004a5697c560be2a92a94d501fe56e36b1876b0"
# What the benchmark's table reads from a run, of any tree (flexicache_run here, flexicache_tree_run.py there)
ROW_FIELDS = ("cpu_s", "requests", "out_tok_per_s", "pcie_h2d_gb", "pcie_d2h_gb", "reloads", "stall_s", "mean_batch")


def child_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------------- full KV (default)
def full_kv_run(trace: str, fast_forward: bool, out_dir: Path, figure: bool = False) -> dict:
    cpu0 = time.process_time()
    requests = load_trace(trace)
    spec = WorkerSpec(worker_id=0, gpu=gpu("H100-SXM-80GB"), model=model("Llama-2-7B"), tp=1)
    cost = make_cost_model("profiled", spec.model, spec.gpu, 1)
    cluster = Cluster([spec], lambda s: cost, SchedulerConfig(), MemoryConfig(), make_router("round_robin"),
                      host_link=host_link(spec.gpu), fast_forward=fast_forward)
    cpu_load = time.process_time()
    run = cluster.run(requests)
    cpu_sim = time.process_time()
    frame, usage = request_frame(run), kv_usage_frame(run)
    save_run(out_dir, frame, summarize(frame, usage), usage, {"benchmark": "sim_speed"})
    if figure:  # the command's latency CDF, drawn by the same function
        from tessera.experiments.report import latency_cdf_figure

        latency_cdf_figure(frame, out_dir / "latency_cdf.png", f"{trace} (library run)")
    cpu = time.process_time() - cpu0
    return {"requests": len(requests), "sim_end_s": run.end_s, "iterations": run.workers[0].num_iterations,
            "load_s": cpu_load - cpu0, "simulate_s": cpu_sim - cpu_load, "write_s": cpu0 + cpu - cpu_sim,
            "cpu_s": cpu, "ttft_p50": summarize(frame)["ttft_s"]["p50"]}


def process_cpu_s(argv: list[str]) -> float:
    """CPU seconds of a fresh process (start-up and imports included)."""
    before = child_cpu_s()
    subprocess.run(argv, check=True, capture_output=True)
    return child_cpu_s() - before


def command_run(out_dir: Path) -> float:
    """`tessera` as a user runs it (the default experiment: serve_trace on azure_code, its table, progress bar,
    figure and batches.parquet) as a fresh process; only the run dir is set."""
    tessera = Path(sys.executable).with_name("tessera")
    return process_cpu_s([str(tessera), f"hydra.run.dir={out_dir}"])


def library_process_run(out_dir: Path, figure: bool = False) -> float:
    """The same simulation driven from Python (this script's library run) as a fresh process; with `figure`, it
    also draws the command's latency CDF (matplotlib's import and the drawing are ~0.35 s of the command's run)."""
    return process_cpu_s([sys.executable, __file__, "--library-run", str(out_dir)] + ["--figure"] * figure)


def full_kv(args, tmp: Path) -> None:
    results = {}
    for label, fast in (("spans", True), ("per-iteration", False)):
        runs = [full_kv_run(args.trace, fast, tmp / f"{label}{i}") for i in range(args.repeat)]
        results[label] = min(runs, key=lambda r: r["cpu_s"])
    spans = results["spans"]
    print(f"trace {args.trace}: {spans['requests']} requests, {spans['sim_end_s']:.0f} simulated s, "
          f"{spans['iterations']} engine iterations (best of {args.repeat}; CPU seconds)")
    print(f"{'mode':>14} {'load s':>7} {'sim s':>7} {'write s':>8} {'cpu s':>7} {'req/cpu-s':>10} {'sim-s/cpu-s':>12}")
    for label, r in results.items():
        print(f"{label:>14} {r['load_s']:7.3f} {r['simulate_s']:7.3f} {r['write_s']:8.3f} {r['cpu_s']:7.3f} "
              f"{r['requests'] / r['cpu_s']:10.0f} {r['sim_end_s'] / r['cpu_s']:12.0f}")
    same = abs(spans["ttft_p50"] - results["per-iteration"]["ttft_p50"]) < 1e-9
    print(f"spans vs per-iteration: {results['per-iteration']['cpu_s'] / spans['cpu_s']:.2f}x faster, "
          f"identical TTFT p50: {same}")
    command = min(command_run(tmp / f"cli{i}") for i in range(args.repeat))
    library = min(library_process_run(tmp / f"lib{i}") for i in range(args.repeat))
    with_figure = min(library_process_run(tmp / f"libfig{i}", figure=True) for i in range(args.repeat))
    print(f"whole processes (start-up and imports included): `tessera` (default experiment, figure included) "
          f"{command:.2f} CPU s, the library run from Python {library:.2f} s: {command / library:.2f}x "
          f"(target <= 2x; vs the in-process library run {command / spans['cpu_s']:.2f}x); the library run drawing "
          f"the same latency CDF {with_figure:.2f} s: {command / with_figure:.2f}x")
    if args.vidur_cpu_s:
        print(f"Vidur whole run {args.vidur_cpu_s:.1f} CPU s (given): tessera is {args.vidur_cpu_s / command:.1f}x "
              "faster (target >= 20x)")
    else:
        print("Vidur is not installed here; to compare, run it on the same trace and pass --vidur-cpu-s:\n"
              f"  {VIDUR_CMD}\n"
              f"  (>= 20x needs Vidur's whole run >= {20 * command:.0f} CPU s on this machine)")


# ------------------------------------------------------------------------------------------------ FlexiCache
def flexicache_run(cfg, rerank_mode: str, args, out_dir: Path) -> dict:
    from tessera.experiments.flexicache.common import kv_setup, simulate, spec_for, workload

    cpu0 = time.process_time()
    spec = spec_for(cfg, "Llama-3.1-8B")
    kv = kv_setup(cfg, "flexicache")
    kv = dataclasses.replace(kv, sim=dataclasses.replace(kv.sim, rerank_mode=rerank_mode))
    requests = workload(args.num_requests, [10_000, 30_000], (args.output_len, args.output_len), {"kind": "burst"},
                        args.seed)
    row, frame = simulate(spec, requests, kv)
    save_run(out_dir, frame, row, None, {"benchmark": "sim_speed", "rerank_mode": rerank_mode})
    return row | {"cpu_s": time.process_time() - cpu0, "requests": len(requests)}


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _run_step(commit: str, what: str, argv: list[str], fix: str, **kwargs) -> subprocess.CompletedProcess:
    """One step of taking a commit's tree; a failure exits 2 naming the step, its error output and the fix."""
    try:
        return subprocess.run(argv, check=True, capture_output=True, **kwargs)
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        fail(f"--baseline-commit {commit}: {what} failed ({err}; {detail.decode(errors='replace').strip()[-400:]}); "
             f"{fix}")


def commit_run(commit: str, args, tmp: Path) -> dict:
    """The same workload on `commit`'s tree (benchmarks/flexicache_tree_run.py in a fresh process): the tree is taken
    from git, installed without dependencies into a folder of its own and run with this environment's packages and
    its own data and configs."""
    tree, site = tmp / "baseline_tree", tmp / "baseline_site"
    archive = _run_step(commit, "git archive", ["git", "-C", str(REPO_ROOT), "archive", commit],
                        "it needs a git checkout whose history has that commit (git fetch --unshallow)")
    tree.mkdir(exist_ok=True)
    _run_step(commit, "unpacking the tree", ["tar", "-x", "-C", str(tree)], "it needs tar on PATH",
              input=archive.stdout)
    _run_step(commit, "installing the tree", [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                              "--no-build-isolation", "--no-compile", "--target", str(site), str(tree)],
              "the tree is installed with this environment's pip and setuptools (pip install setuptools)")
    env = os.environ | {"PYTHONPATH": str(site), "TESSERA_DATA_DIR": str(tree / "data")}
    before = child_cpu_s()
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("flexicache_tree_run.py")), str(tree / "conf"),
                           str(args.num_requests), str(args.output_len), str(args.seed), str(tmp / "baseline_run")],
                          env=env, cwd=tmp, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"--baseline-commit {commit}: its run failed (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}")
    try:
        row = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        fail(f"--baseline-commit {commit}: its run printed no result line (last output: {done.stdout[-400:]!r})")
    missing = [f for f in (*ROW_FIELDS, "tessera", "rerank_mode") if f not in row]
    if missing:
        fail(f"--baseline-commit {commit}: its run reports no {', '.join(missing)}; that tree's "
             f"experiments/flexicache/common.py simulate() predates these fields: pick a later commit")
    if not row["tessera"].startswith(str(site)):
        fail(f"--baseline-commit {commit}: the run imported {row['tessera']}, not the tree in {site}")
    return row | {"process_cpu_s": child_cpu_s() - before}


def flexicache(args, tmp: Path) -> None:
    from hydra import compose, initialize_config_dir

    from tessera.experiments.config import register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="sim_speed"):
        cfg = compose(config_name="config", overrides=["experiment=flexicache_throughput"])
    from tessera.kvcache.rank_moments import _table

    def best(mode: str, label: str, fresh_tables: bool) -> dict:
        """The fastest of --repeat runs (pages: one, ~14 s), none with tables in memory; fresh_tables: each run
        draws the moment tables (an empty cache), else reads the last drawn ones from the on-disk cache."""
        runs = []
        for i in range(1 if mode == "pages" else args.repeat):
            if fresh_tables:
                os.environ["TESSERA_CACHE_DIR"] = str(tmp / f"table_cache_{label}{i}")
            _table.cache_clear()
            runs.append(flexicache_run(cfg, mode, args, tmp / f"{label}{i}"))
        return min(runs, key=lambda r: r["cpu_s"])

    baseline = commit_run(args.baseline_commit, args, tmp) if args.baseline_commit else None  # first: fails fast
    cache_setting = os.environ.get("TESSERA_CACHE_DIR")
    try:
        rows = {mode: best(mode, mode, True) for mode in ("pages", "sampled", "moments")}
        rows["moments, cached"] = best("moments", "moments_cached", False)  # as later processes: tables read back
    finally:
        if cache_setting is None:
            os.environ.pop("TESSERA_CACHE_DIR", None)
        else:
            os.environ["TESSERA_CACHE_DIR"] = cache_setting
    print_flexicache_table(rows, args, baseline)


def print_flexicache_table(rows: dict[str, dict], args, baseline: dict | None) -> None:
    """The modes side by side (rows: pages, sampled, moments, "moments, cached"), then the older tree's run
    (baseline, from commit_run) and every mode's speed-up over it."""
    baseline_label = None
    if baseline is not None:
        baseline_label = f"{baseline['rerank_mode']} @{args.baseline_commit[:7]}"
        rows = rows | {baseline_label: baseline}
    print(f"offline throughput, FlexiCache K=1024 R=16: {args.num_requests} requests, prompts 10k-30k, "
          f"{args.output_len} output tokens each, Llama-3.1-8B on 1 x H100-NVL (whole run, CPU seconds; pages one "
          f"run, the others best of {args.repeat})")
    print(f"{'rerank mode':>16} {'cpu s':>7} {'req/cpu-s':>10} {'out tok/s':>10} {'H2D GB':>8} {'D2H GB':>8} "
          f"{'reloads':>8} {'stall s':>8} {'mean batch':>11}")
    for mode, r in rows.items():
        print(f"{mode:>16} {r['cpu_s']:7.2f} {r['requests'] / r['cpu_s']:10.1f} {r['out_tok_per_s']:10.0f} "
              f"{r['pcie_h2d_gb']:8.1f} {r['pcie_d2h_gb']:8.1f} {r['reloads']:8d} {r['stall_s']:8.2f} "
              f"{r['mean_batch']:11.1f}")
    for mode in ("sampled", "moments", "moments, cached"):
        rate = rows[mode]["requests"] / rows[mode]["cpu_s"]
        print(f"{mode} vs pages: {rows['pages']['cpu_s'] / rows[mode]['cpu_s']:.1f}x faster (target >= 100x); "
              f"{rate:.0f} req/cpu-s (target >= 1,000)")
    if baseline is not None:
        print(f"{baseline_label}: the tree of commit {args.baseline_commit} (one run, its own defaults; its whole "
              f"process {baseline['process_cpu_s']:.2f} CPU s with imports)")
        for mode in ("pages", "sampled", "moments", "moments, cached"):
            print(f"{mode} vs {baseline_label}: {baseline['cpu_s'] / rows[mode]['cpu_s']:.1f}x faster (target >= 100x)")
    h2d = rows["pages"]["pcie_h2d_gb"]
    print("H2D GB vs pages: " + ", ".join(f"{m} {100 * (rows[m]['pcie_h2d_gb'] / h2d - 1):+.2f}%"
                                          for m in ("sampled", "moments", "moments, cached")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvpolicy", choices=("full", "flexicache"), default="full")
    parser.add_argument("--trace", default="azure_code", help="full KV: the trace to replay")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per mode (flexicache: but pages); the fastest is reported")
    parser.add_argument("--vidur-cpu-s", type=float, default=None, help="full KV: Vidur's measured whole-run CPU s")
    parser.add_argument("--num-requests", type=int, default=500, help="flexicache: requests (paper: 500)")
    parser.add_argument("--output-len", type=int, default=500, help="flexicache: output tokens per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-commit", nargs="?", const=ISSUE_15_FILED_COMMIT, default=None,
                        help="flexicache: also run the workload on this commit's tree (default when given alone: "
                             f"{ISSUE_15_FILED_COMMIT[:7]}, the tree issue 15 was filed against)")
    parser.add_argument("--library-run", type=Path, default=None, help=argparse.SUPPRESS)  # one run, for timing
    parser.add_argument("--figure", action="store_true", help=argparse.SUPPRESS)  # the library run draws the CDF
    args = parser.parse_args()
    if args.baseline_commit and args.kvpolicy != "flexicache":
        parser.error("--baseline-commit compares FlexiCache runs: add --kvpolicy flexicache")
    if args.library_run is not None:
        full_kv_run(args.trace, True, args.library_run, figure=args.figure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        (flexicache if args.kvpolicy == "flexicache" else full_kv)(args, Path(tmp))


if __name__ == "__main__":
    main()
