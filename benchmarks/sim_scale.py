"""Simulator scale: CPU time vs workers x requests (ShareGPT lengths, Poisson arrivals at a fixed rate per worker).

Each point runs in a fresh process (so its peak RSS is its own) on Llama-2-7B / H100 workers behind a round-robin
router, full KV: build the workload, simulate, build the request/worker frames. Prints CPU seconds per phase,
requests per CPU-second, microseconds per request and peak RSS per simulated request, one row per point, so the
curve's linearity shows in the last columns. Target (issue 15): 1,000,000 requests on 1,024 workers in <= 60 s.
Run: .venv/bin/python benchmarks/sim_scale.py [--workers 1 8 64 128] [--full] [--per-worker 1000] [--plain]
[--one-env]
(--full adds the 1,024-worker point: about a million requests; run it once, the machine is shared.)
--plain: without the decode cohort (sim/decode_cohort.py), every step through the scheduler; --one-env: every
worker in one SimPy environment (round-robin routing couples nothing, so by default each worker runs alone in its
own: sim/cluster.py _run_independent). Either way the digest column (request and worker frames) must read the same.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time


def digest(*frames) -> str:
    """Short hash of the frames' values (row hashes, NaN and missing values included)."""
    import pandas as pd

    h = hashlib.sha256()
    for frame in frames:
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:10]


def point(workers: int, per_worker: int, rate_per_worker: float, seed: int, cohort: bool = True,
          independent: bool = True) -> dict:
    """One measurement in this process: phases in CPU seconds, peak RSS in bytes."""
    cpu0 = time.process_time()
    from tessera.cost import make_cost_model
    from tessera.hardware import gpu
    from tessera.memory import MemoryConfig
    from tessera.models import model
    from tessera.scheduling import SchedulerConfig
    from tessera.sim import Cluster, make_router, request_frame, worker_frame
    from tessera.types import WorkerSpec
    from tessera.workload import build_workload
    from tessera.workload.context_limit import apply_context_limit

    cpu_import = time.process_time()
    llama, h100 = model("Llama-2-7B"), gpu("H100-SXM-80GB")
    n = workers * per_worker
    requests = build_workload({"kind": "synthetic", "num_requests": n, "seed": seed, "lengths": {"kind": "sharegpt"},
                               "arrival": {"kind": "poisson", "rate": rate_per_worker * workers}})
    requests, _ = apply_context_limit(requests, llama.max_position, "clip_prompt")
    cpu_load = time.process_time()
    cost = make_cost_model("profiled", llama, h100, 1)
    specs = [WorkerSpec(worker_id=i, gpu=h100, model=llama, tp=1) for i in range(workers)]
    cluster = Cluster(specs, lambda s: cost, SchedulerConfig(), MemoryConfig(), make_router("round_robin"),
                      decode_cohort=cohort, independent_workers=independent)
    run = cluster.run(requests)
    cpu_sim = time.process_time()
    frame, workers_frame = request_frame(run), worker_frame(run)
    cpu_frames = time.process_time()
    return {"workers": workers, "requests": len(frame), "finished": int((frame["status"] == "finished").sum()),
            "sim_end_s": run.end_s, "iterations": int(workers_frame["iterations"].sum()),
            "import_s": cpu_import - cpu0, "load_s": cpu_load - cpu_import, "simulate_s": cpu_sim - cpu_load,
            "frames_s": cpu_frames - cpu_sim,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "digest": digest(frame, workers_frame)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64, 128])
    parser.add_argument("--full", action="store_true", help="add the 1,024-worker point (about 1M requests)")
    parser.add_argument("--per-worker", type=int, default=1000, help="requests per worker")
    parser.add_argument("--rate-per-worker", type=float, default=4.0, help="Poisson arrivals per second per worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="without the decode cohort (the reference path)")
    parser.add_argument("--one-env", action="store_true",
                        help="every worker in one SimPy environment (the reference for independent workers)")
    parser.add_argument("--point", type=int, default=None, help=argparse.SUPPRESS)  # run one point, print JSON
    args = parser.parse_args()
    if args.point is not None:
        print(json.dumps(point(args.point, args.per_worker, args.rate_per_worker, args.seed, not args.plain,
                               not args.one_env)))
        return
    workers = args.workers + ([1024] if args.full and 1024 not in args.workers else [])
    print(f"ShareGPT lengths, Poisson {args.rate_per_worker:g} req/s per worker, {args.per_worker} requests per "
          "worker, Llama-2-7B on H100 x workers, round-robin, full KV (CPU seconds, one fresh process per point)"
          + (", without the decode cohort" if args.plain else "")
          + (", every worker in one SimPy environment" if args.one_env else ""))
    print(f"{'workers':>8} {'requests':>9} {'iters':>9} {'import':>7} {'load':>6} {'sim':>7} {'frames':>7} "
          f"{'total':>7} {'req/cpu-s':>10} {'us/req':>7} {'RSS MiB':>8} {'B/req':>7} {'digest':>10}")
    base_rss = None
    for w in workers:
        out = subprocess.run([sys.executable, __file__, "--point", str(w), "--per-worker", str(args.per_worker),
                              "--rate-per-worker", str(args.rate_per_worker), "--seed", str(args.seed)]
                             + (["--plain"] if args.plain else []) + (["--one-env"] if args.one_env else []),
                             check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        work = r["load_s"] + r["simulate_s"] + r["frames_s"]
        total = work + r["import_s"]
        if base_rss is None:
            base_rss, base_requests = r["peak_rss_bytes"], r["requests"]
        more = r["requests"] - base_requests  # the RSS above the first point's is these requests'
        per_req = (r["peak_rss_bytes"] - base_rss) / more if more > 0 else float("nan")
        print(f"{w:>8} {r['requests']:>9} {r['iterations']:>9} {r['import_s']:7.2f} {r['load_s']:6.2f} "
              f"{r['simulate_s']:7.2f} {r['frames_s']:7.2f} {total:7.2f} {r['requests'] / work:10.0f} "
              f"{1e6 * work / r['requests']:7.1f} {r['peak_rss_bytes'] / 2**20:8.0f} {per_req:7.0f} {r['digest']:>10}")
    print("req/cpu-s and us/req exclude imports; B/req: peak RSS above the first point's, per request beyond the "
          "first point's")


if __name__ == "__main__":
    main()
