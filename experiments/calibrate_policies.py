"""calibrate_runtime's KV-policy stage: the same trace on the runtime and in the simulator under each KV
policy (flexicache, quest, ...), the simulator on the calibration just fitted, slowed by the CPU share each
runtime run measured (the machine is shared: what a run got, not an idle core, is what it is held to).

The calibration is fitted on full-KV steps; sparse decode in the simulator is charged at its kvpolicy's
sparse_kernel_efficiency (fitted to the paper's H100 kernel), so this stage shows how far that carries.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tessera.results.schema import add_latency_columns
from tessera.sim.kv_setup import KVSetup


def policy_stage(policies: list[str], repeats: int, run_one, sim_one, latency_stats, comparison_table,
                 out: Path) -> pd.DataFrame | None:
    """run_one(kv_conf) -> (requests frame, CPU share); sim_one(kv_setup, share) -> requests frame.
    Writes policy_comparison.csv (one comparison table per policy) and policy_requests.csv."""
    tables, frames = [], []
    for name in policies:
        conf = {"name": name}
        kv = KVSetup.from_conf(conf)
        measured, simulated = [], {"adjusted": []}
        for r in range(repeats):
            frame, share = run_one(conf)
            sim = sim_one(kv, share)
            measured.append(latency_stats(frame))
            simulated["adjusted"].append(latency_stats(sim))
            frames += [add_latency_columns(frame).assign(backend="runtime", kvpolicy=name, repeat=r, cpu_share=share),
                       add_latency_columns(sim).assign(backend="sim_adjusted", kvpolicy=name, repeat=r)]
            print(f"kvpolicy {name} repeat {r}: CPU share {share:.2f}", flush=True)
        idle = latency_stats(sim_one(kv, 1.0))
        tables.append(comparison_table(measured, simulated, idle).assign(kvpolicy=name))
    if not tables:
        return None
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "policy_comparison.csv", index=False, float_format="%.5g")
    pd.concat(frames, ignore_index=True).to_csv(out / "policy_requests.csv", index=False)
    return table
