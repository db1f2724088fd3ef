"""One FlexiCache offline-throughput run (benchmarks/sim_speed.py's workload) through whichever Tessera tree is
imported, printed as one JSON line: sim_speed.py --baseline-commit runs it on an older tree, installed apart.
"""
from __future__ import annotations

import json
import sys
import time


def main() -> None:
    """argv: CONF_DIR NUM_REQUESTS OUTPUT_LEN SEED OUT_DIR. Uses only what every tree since the FlexiCache experiments
    has (experiments/flexicache/common.py, tessera.results.save_run) and the tree's own defaults (its rerank mode
    too); CPU time counts what sim_speed.py's flexicache_run counts (setup, workload, simulation, results)."""
    conf_dir, num_requests, output_len, seed, out_dir = sys.argv[1:6]
    from hydra import compose, initialize_config_dir

    import tessera
    from tessera.experiments import config as experiment_config
    from tessera.experiments.flexicache.common import kv_setup, simulate, spec_for, workload
    from tessera.results import save_run

    if hasattr(experiment_config, "register_configs"):
        experiment_config.register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir, job_name="flexicache_tree_run"):
        cfg = compose(config_name="config", overrides=["experiment=flexicache_throughput"])
    cpu0 = time.process_time()
    spec = spec_for(cfg, "Llama-3.1-8B")
    kv = kv_setup(cfg, "flexicache")
    requests = workload(int(num_requests), [10_000, 30_000], (int(output_len), int(output_len)), {"kind": "burst"},
                        int(seed))
    row, frame = simulate(spec, requests, kv)
    save_run(out_dir, frame, row, None, {"benchmark": "sim_speed", "tree": tessera.__file__})
    row |= {"cpu_s": time.process_time() - cpu0, "requests": len(requests), "tessera": tessera.__file__,
            "rerank_mode": getattr(getattr(kv, "sim", None), "rerank_mode", "pages")}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
